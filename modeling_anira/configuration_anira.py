"""Configuration of ANIRA, a recurrent (weight-tied) Transformer in which every token gets its own depth.

The sizes follow Llama's configuration (same names, same meaning); the recurrence adds the three stacks
(prelude, core, coda), the depth budget and the depth controller. Every value is validated when the
config is made, and a bad one raises a `ValueError` that names the field and what is allowed.
"""

from transformers import PreTrainedConfig

DEPTH_MODES = ("fixed", "early", "online")
INJECTIONS = ("concat", "add")
HALTING_OBJECTIVES = ("straight_through", "act", "pondernet")


class AniraConfig(PreTrainedConfig):
    r"""
    Args:
        vocab_size, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim,
        hidden_act, max_position_embeddings, initializer_range, rms_norm_eps, rope_parameters,
        attention_bias, attention_dropout, mlp_bias, tie_word_embeddings, pad/bos/eos_token_id:
            As in `LlamaConfig`. `head_dim` defaults to `hidden_size // num_attention_heads` and
            `num_key_value_heads` to `num_attention_heads` (no grouping).
        num_prelude_layers (`int`, defaults to 1):
            P untied layers between the embedding and the recurrence; their output `e` is the shallow
            representation that the early router reads and that is injected at every iteration.
        num_core_layers (`int`, defaults to 2):
            C layers whose weights are shared across iterations (one iteration = one pass through all C).
        num_coda_layers (`int`, defaults to 1):
            K untied layers over each token's final recurrent state, before the final norm and the head.
        max_depth (`int`, defaults to 8):
            D, the most iterations of the core a token can get in training. Fixed and online models can
            be given a larger budget at inference (`forward(..., max_depth=...)`).
        min_depth (`int`, defaults to 1):
            Iterations that always run, whatever the controller decides.
        injection (`str`, defaults to `"add"`):
            How the shallow representation enters each iteration: `"add"` (h + e) or `"concat"`
            (W [h; e], a 2H -> H matrix initialised to [I I], so both modes start as the same function).
        depth_mode (`str`, defaults to `"online"`):
            `"fixed"` (every token runs `max_depth`), `"early"` (ANIRA-E, a router on norm(e) picks each
            token's depth once) or `"online"` (ANIRA-O, a halting head after every iteration).
        halting_threshold (`float`, defaults to 0.5):
            Online mode: a token halts after the first iteration whose halting probability reaches it.
        halting_objective (`str`, defaults to `"straight_through"`):
            Online mode: how halting is trained. `"straight_through"` (hard threshold forward, gradient
            straight through to the halting probability; the same rule as inference), `"act"` (Graves'
            cumulative halting, ponder cost N + R) or `"pondernet"` (threshold forward, KL of the halting
            distribution to a geometric prior of mean `pondernet_prior_depth`).
        pondernet_prior_depth (`float`, defaults to 3.0):
            Mean depth of the geometric prior of the `pondernet` objective (must lie in [1, max_depth]).
        act_epsilon (`float`, defaults to 0.01):
            `act` objective: a token halts once its cumulative halting probability reaches 1 - act_epsilon.
        gumbel_temperature (`float`, defaults to 1.0):
            Early mode: temperature of the straight-through Gumbel-softmax used in training.
        compute_penalty (`float`, defaults to 0.01):
            Weight of the compute loss (expected depth / max_depth) in the training loss. Small by default:
            DESIGN.md's prototype showed that a large early penalty collapses every token to depth 1 before
            the task is learned. Training scripts can schedule it (see `examples/train.py`).
        depth_init_bias (`float`, defaults to 3.0):
            How strongly the untrained controllers favour running to `max_depth`: the early router's
            logit for `max_depth` starts this much above the others, and the halting head's bias starts
            at -depth_init_bias (halting probability ~0.05 with the default), so training starts at full
            depth and the task can be learned before compute is cut.
    """

    model_type = "anira"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    def __init__(
        self,
        vocab_size: int = 128,
        hidden_size: int = 128,
        intermediate_size: int = 512,
        num_attention_heads: int = 4,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 1024,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_parameters: dict | None = None,
        attention_bias: bool = False,
        attention_dropout: float = 0.0,
        mlp_bias: bool = False,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 1,
        eos_token_id: int | list[int] | None = 2,
        num_prelude_layers: int = 1,
        num_core_layers: int = 2,
        num_coda_layers: int = 1,
        max_depth: int = 8,
        min_depth: int = 1,
        injection: str = "add",
        depth_mode: str = "online",
        halting_threshold: float = 0.5,
        halting_objective: str = "straight_through",
        pondernet_prior_depth: float = 3.0,
        act_epsilon: float = 0.01,
        gumbel_temperature: float = 1.0,
        compute_penalty: float = 0.01,
        depth_init_bias: float = 3.0,
        **kwargs,
    ):
        # Derived, so never taken from a saved config.json: the number of layer applications at full
        # depth (= cache slots; transformers' generate sizes a default cache by it).
        kwargs.pop("num_hidden_layers", None)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.head_dim = head_dim
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_parameters = rope_parameters
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.mlp_bias = mlp_bias
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.num_prelude_layers = num_prelude_layers
        self.num_core_layers = num_core_layers
        self.num_coda_layers = num_coda_layers
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.injection = injection
        self.depth_mode = depth_mode
        self.halting_threshold = halting_threshold
        self.halting_objective = halting_objective
        self.pondernet_prior_depth = pondernet_prior_depth
        self.act_epsilon = act_epsilon
        self.gumbel_temperature = gumbel_temperature
        self.compute_penalty = compute_penalty
        self.depth_init_bias = depth_init_bias
        if head_dim is None and isinstance(hidden_size, int) and isinstance(num_attention_heads, int):
            self.head_dim = hidden_size // num_attention_heads if num_attention_heads > 0 else 0
        # Our checks first: they name the field, where transformers' own validators would not.
        self.validate()
        super().__init__(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "AniraConfig":
        """As `PreTrainedConfig.from_pretrained`, but a checkpoint of another model type is an error, not a
        warning followed by a silently default-initialised model."""
        config_dict, _ = cls.get_config_dict(pretrained_model_name_or_path, **dict(kwargs))
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a '{model_type}' checkpoint, not an '{cls.model_type}' one; "
                "load it with its own class (or AutoModelForCausalLM)."
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def num_hidden_layers(self) -> int:
        """Layer applications of a token at full depth: prelude + core x max_depth + coda."""
        return self.layer_applications(self.max_depth)

    def layer_applications(self, depth: int) -> int:
        return self.num_prelude_layers + self.num_core_layers * depth + self.num_coda_layers

    def validate(self) -> None:
        """Raise a `ValueError` naming the first field whose value is not allowed."""

        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"AniraConfig.{name} must be an integer >= {minimum}, got {value!r}.")

        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings", "num_core_layers",
                     "max_depth", "min_depth"):
            positive_int(name)
        positive_int("num_prelude_layers", 0)
        positive_int("num_coda_layers", 0)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"AniraConfig.num_attention_heads ({self.num_attention_heads}) must divide "
                f"hidden_size ({self.hidden_size})."
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"AniraConfig.num_key_value_heads ({self.num_key_value_heads}) must divide "
                f"num_attention_heads ({self.num_attention_heads})."
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"AniraConfig.head_dim must be even for rotary embeddings, got {self.head_dim}.")
        if self.min_depth > self.max_depth:
            raise ValueError(
                f"AniraConfig.min_depth ({self.min_depth}) must be in [1, max_depth={self.max_depth}]."
            )
        if self.depth_mode not in DEPTH_MODES:
            raise ValueError(f"AniraConfig.depth_mode must be one of {DEPTH_MODES}, got {self.depth_mode!r}.")
        if self.injection not in INJECTIONS:
            raise ValueError(f"AniraConfig.injection must be one of {INJECTIONS}, got {self.injection!r}.")
        if self.halting_objective not in HALTING_OBJECTIVES:
            raise ValueError(
                f"AniraConfig.halting_objective must be one of {HALTING_OBJECTIVES}, "
                f"got {self.halting_objective!r}."
            )
        if not 0.0 < self.halting_threshold < 1.0:
            raise ValueError(
                f"AniraConfig.halting_threshold must be in the open interval (0, 1), got {self.halting_threshold}."
            )
        if not 0.0 < self.act_epsilon < 1.0:
            raise ValueError(f"AniraConfig.act_epsilon must be in (0, 1), got {self.act_epsilon}.")
        if self.halting_objective == "pondernet" and not 1.0 <= self.pondernet_prior_depth <= self.max_depth:
            raise ValueError(
                f"AniraConfig.pondernet_prior_depth must be in [1, max_depth={self.max_depth}], "
                f"got {self.pondernet_prior_depth}."
            )
        if not self.gumbel_temperature > 0.0:
            raise ValueError(f"AniraConfig.gumbel_temperature must be > 0, got {self.gumbel_temperature}.")
        if not self.compute_penalty >= 0.0:
            raise ValueError(f"AniraConfig.compute_penalty must be >= 0, got {self.compute_penalty}.")
        if not self.rms_norm_eps > 0.0:
            raise ValueError(f"AniraConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps}.")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"AniraConfig.attention_dropout must be in [0, 1), got {self.attention_dropout}.")
        if not self.initializer_range > 0.0:
            raise ValueError(f"AniraConfig.initializer_range must be > 0, got {self.initializer_range}.")
        for name in ("pad_token_id", "bos_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"AniraConfig.{name} must be in [0, vocab_size={self.vocab_size}), got {value}.")


__all__ = ["AniraConfig"]
