"""Configuration of ANIRA, a recurrent (weight-tied) Transformer in which every token gets its own depth.

The sizes follow Llama's configuration (same names, same meaning); the recurrence adds the three stacks
(prelude, core, coda), the depth budget and the depth controller. `AniraConfig`'s docstring lists how every
field is validated; docs/design.md says why this is a table of rules and not huggingface_hub's strict dataclasses.
"""

import dataclasses
import math
import numbers
import warnings

from transformers import GenerationConfig, PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

DEPTH_MODES = ("fixed", "early", "online")
INJECTIONS = ("concat", "add")
HALTING_OBJECTIVES = ("straight_through", "act", "pondernet")
ROUTER_GRADIENTS = ("full", "next")
ROUTER_SAMPLINGS = ("gumbel", "argmax")
# The most iterations a config or a call may ask for. Every token's depth distribution is a
# [batch, seq, max_depth] tensor and an early model's router has max_depth outputs, so an unbounded budget
# (a typo, 10**9) would hang or exhaust memory instead of failing; 1024 is far beyond any trained budget.
MAX_DEPTH_LIMIT = 1024
# The most layers one stack (prelude, core, coda) may hold: building a model allocates every layer, so a typo
# (num_core_layers=1000000) would hang there instead of failing; a trained model has a handful.
MAX_LAYERS_LIMIT = 1024
# What a saved model folder's config.json names for `trust_remote_code=True`: every Auto class a user reaches for
# (AutoTokenizer needs no entry: the tokenizer is a plain `PreTrainedTokenizerFast`). transformers writes only the
# class being saved (`AutoModelForCausalLM` for the LM), so `AutoModel` would refuse the folder; `save_pretrained`
# below completes the map.
AUTO_MAP = {
    "AutoConfig": "configuration_anira.AniraConfig",
    "AutoModel": "modeling_anira.AniraModel",
    "AutoModelForCausalLM": "modeling_anira.AniraForCausalLM",
}

# Keys that PreTrainedConfig itself consumes or writes, on top of its dataclass fields and AniraConfig's own.
_BASE_KEYS = {
    "auto_map", "model_type", "transformers_version", "torch_dtype", "num_labels", "rope_scaling", "rope_theta",
    "name_or_path", "_name_or_path", "_commit_hash", "output_attentions", "attn_implementation",
    "experts_implementation", "per_layer_config", "tie_last_hidden_states", "num_hidden_layers",
    "_attn_implementation_internal", "_experts_implementation_internal", "quantization_config",
}


def _check_integer(name: str, value, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or (
        maximum is not None and value > maximum
    ):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"AniraConfig.{name} must be an integer {allowed}, got {value!r}.")


def _check_real(name: str, value, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """A finite number (not a bool, a string or None) in the given interval."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is None and high is None:
            allowed = "a finite number"
        elif high is None:
            allowed = f"a finite number {'>' if low_open else '>='} {low}"
        else:
            allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"AniraConfig.{name} must be {allowed}, got {value!r}.")


def _check_choice(name: str, value, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"AniraConfig.{name} must be one of {tuple(choices)}, got {value!r}.")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):  # "false" is a non-empty string, i.e. True: refuse it rather than guess
        raise ValueError(f"AniraConfig.{name} must be True or False, got {value!r}.")


def _check_token_id(name: str, value, vocab_size) -> None:
    ids = value if isinstance(value, (list, tuple)) and name == "eos_token_id" else [value]
    if value is None:
        return
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise ValueError(f"AniraConfig.{name} must be None or a token id (an integer), got {value!r}.")
        if isinstance(vocab_size, numbers.Integral) and not 0 <= token < vocab_size:
            raise ValueError(f"AniraConfig.{name} must be in [0, vocab_size={vocab_size}), got {value!r}.")


def _check_rope(value) -> None:
    if value is None:
        return  # standardized to the default rotary embedding when the config is made
    if not isinstance(value, dict):
        raise ValueError(f"AniraConfig.rope_parameters must be a dict (rope_type, rope_theta, ...), got {value!r}.")
    rope_type = value.get("rope_type", value.get("type", "default"))
    types = ("default", *ROPE_INIT_FUNCTIONS)
    if rope_type not in types:
        raise ValueError(f"AniraConfig.rope_parameters['rope_type'] must be one of {types}, got {rope_type!r}.")
    for key in ("rope_theta", "factor", "attention_factor", "beta_fast", "beta_slow", "low_freq_factor",
                "high_freq_factor", "mscale", "mscale_all_dim"):
        if value.get(key) is not None:
            _check_real(f"rope_parameters['{key}']", value[key], 0.0, low_open=key in ("rope_theta", "factor"))
    if rope_type in ("linear", "dynamic", "yarn", "llama3") and value.get("factor") is None:
        raise ValueError(f"AniraConfig.rope_parameters['factor'] is required for rope_type={rope_type!r}.")
    if value.get("partial_rotary_factor", 1.0) != 1.0 and rope_type != "proportional":
        # The rotation is applied to the whole head (Llama's apply_rotary_pos_emb); only "proportional" pads
        # its frequencies to the full head dimension.
        raise ValueError(
            "AniraConfig.rope_parameters['partial_rotary_factor'] must be 1.0 (rotary embeddings cover the whole "
            f"head) except with rope_type='proportional', got {value['partial_rotary_factor']!r}."
        )
    if value.get("original_max_position_embeddings") is not None:
        _check_integer("rope_parameters['original_max_position_embeddings']", value["original_max_position_embeddings"], 1)


# Each field's own rule, by kind. Checked when the config is made, when the field is set, and by `validate`.
_INTEGER_RANGES = {  # field: (minimum, maximum or None)
    "vocab_size": (1, None), "hidden_size": (1, None), "intermediate_size": (1, None),
    "num_attention_heads": (1, None), "num_key_value_heads": (1, None), "head_dim": (1, None),
    "max_position_embeddings": (1, None), "min_depth": (1, None), "max_depth": (1, MAX_DEPTH_LIMIT),
    "num_core_layers": (1, MAX_LAYERS_LIMIT), "num_prelude_layers": (0, MAX_LAYERS_LIMIT),
    "num_coda_layers": (0, MAX_LAYERS_LIMIT),
}
_REAL_RANGES = {  # field: the interval, as `_check_real` takes it (none: any finite number)
    "initializer_range": dict(low=0.0, low_open=True),
    "rms_norm_eps": dict(low=0.0, low_open=True),
    "attention_dropout": dict(low=0.0, high=1.0, high_open=True),
    "halting_threshold": dict(low=0.0, high=1.0, low_open=True, high_open=True),
    "act_epsilon": dict(low=0.0, high=1.0, low_open=True, high_open=True),
    "pondernet_prior_depth": dict(low=1.0),
    "gumbel_temperature": dict(low=0.0, low_open=True),
    "compute_penalty": dict(low=0.0),
    "iteration_loss_weight": dict(low=0.0),
    "depth_init_bias": dict(),
}
_BOOLEANS = ("attention_bias", "mlp_bias", "tie_word_embeddings", "use_cache")
_CHOICES = {
    "hidden_act": tuple(sorted(ACT2FN)), "depth_mode": DEPTH_MODES, "injection": INJECTIONS,
    "halting_objective": HALTING_OBJECTIVES, "router_gradient": ROUTER_GRADIENTS, "router_sampling": ROUTER_SAMPLINGS,
}
_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")
_CHECKED_FIELDS = (*_INTEGER_RANGES, *_REAL_RANGES, *_BOOLEANS, *_CHOICES, "rope_parameters", *_TOKEN_IDS)


def _check_field(name: str, value, vocab_size) -> None:
    """Field `name`'s own rule: a `ValueError` naming the field if `value` breaks it (a field with no rule passes)."""
    if name in _INTEGER_RANGES:
        _check_integer(name, value, *_INTEGER_RANGES[name])
    elif name in _REAL_RANGES:
        _check_real(name, value, **_REAL_RANGES[name])
    elif name in _BOOLEANS:
        _check_bool(name, value)
    elif name in _CHOICES:
        _check_choice(name, value, _CHOICES[name])
    elif name == "rope_parameters":
        _check_rope(value)
    elif name in _TOKEN_IDS:
        _check_token_id(name, value, vocab_size)


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
            Each of the three stacks holds at most `MAX_LAYERS_LIMIT` (1024) layers.
        max_depth (`int`, defaults to 8):
            D, the most iterations of the core a token can get in training. Fixed and online models can
            be given a larger budget at inference (`forward(..., max_depth=...)`). At most `MAX_DEPTH_LIMIT`
            (1024), for the config and for a call's budget alike.
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
        router_sampling (`str`, defaults to `"gumbel"`):
            Early mode: how training picks each token's depth (the backward is the straight-through softmax
            gradient either way; evaluation always takes the argmax). `"gumbel"` draws it from the router's
            distribution (straight-through Gumbel-softmax), so a token whose router is unsure trains at several
            depths. `"argmax"` takes the depth inference will take, as ANIRA-O's default halting objective
            trains on its inference rule; the router then explores only through its gradient.
        router_gradient (`str`, defaults to `"full"`):
            Early mode: which iterations the router's straight-through gradient reads in training (the
            forward is the same). `"full"` is the exact straight-through Gumbel-softmax: the choice z_d of
            every depth d gets the gradient of the masks of all iterations up to d, so every token runs all
            `max_depth` iterations in training whatever its depth. `"next"` keeps only the iteration after a
            token's chosen depth (the masks of later iterations pass no gradient), the signal ANIRA-O's
            halting gets, so training computes d_i + 1 iterations per token and costs what the depths cost.
        compute_penalty (`float`, defaults to 0.01):
            Weight of the compute loss (expected depth / max_depth) in the training loss. Small by default:
            docs/design.md's prototype showed that a large early penalty collapses every token to depth 1 before
            the task is learned. Training scripts can schedule it (see `examples/train.py`).
        iteration_loss_weight (`float`, defaults to 0.0):
            Weight of the iteration loss: the LM loss read out after each iteration t < max_depth (the states
            h^t, frozen tokens at their own depth, through the coda, norm and head), averaged over those
            iterations, added to the training loss. 0 (the default) is the plain objective. The readouts ask
            every iteration to hold the best answer it can, so a token whose answer is ready early gains
            nothing from later iterations and the compute penalty can remove them; without them a model may
            spread one algorithm over all its iterations, and then no depth below the maximum answers even the
            easy items (experiments/penalty_runs/ measured this for ANIRA-E). It tells the model
            nothing about difficulty. Costs max_depth - 1 extra coda passes per training step.
        depth_init_bias (`float`, defaults to 3.0):
            How strongly the untrained controllers favour running to `max_depth`: the early router's
            logit for `max_depth` starts this much above the others, and the halting head's bias starts
            at -depth_init_bias (halting probability ~0.05 with the default), so training starts at full
            depth and the task can be learned before compute is cut.

    Validation:
        Every value is checked, and a bad one raises a `ValueError` that names the field and what is allowed.
        Each field's own rule:

        - integers (a bool is not one): `vocab_size`, `hidden_size`, `intermediate_size`, `num_attention_heads`,
          `num_key_value_heads`, `head_dim`, `max_position_embeddings`, `min_depth` >= 1; `max_depth` in
          [1, `MAX_DEPTH_LIMIT`]; `num_core_layers` in [1, `MAX_LAYERS_LIMIT`]; `num_prelude_layers`,
          `num_coda_layers` in [0, `MAX_LAYERS_LIMIT`];
        - finite numbers (not None, a string or a bool): `initializer_range`, `rms_norm_eps`, `gumbel_temperature`
          > 0; `attention_dropout` in [0, 1); `halting_threshold`, `act_epsilon` in (0, 1); `pondernet_prior_depth`
          >= 1; `compute_penalty`, `iteration_loss_weight` >= 0; `depth_init_bias` any;
        - True or False (not `"false"` or 1): `attention_bias`, `mlp_bias`, `tie_word_embeddings`, `use_cache`;
        - one of the names above: `depth_mode`, `injection`, `halting_objective`, `router_gradient`,
          `router_sampling`; `hidden_act` one of transformers' activations;
        - `rope_parameters`: None or a dict whose `rope_type` transformers knows, its numbers finite and >= 0
          (`rope_theta` and `factor` > 0; `factor` required by linear, dynamic, yarn and llama3), and
          `partial_rotary_factor` 1 except with `proportional`;
        - `pad_token_id`, `bos_token_id`, `eos_token_id` (also a list of ids): None or an id in [0, vocab_size).

        The rules between fields: `num_attention_heads` divides `hidden_size`, `num_key_value_heads` divides
        `num_attention_heads`, `head_dim` is even, `min_depth <= max_depth`, and with `halting_objective="pondernet"`
        `pondernet_prior_depth <= max_depth`.

        All rules run when the config is made (so also when a config.json is loaded), by `validate()`, `update` and
        `update_from_string`, and when a model is built from it. Setting a field on an existing config
        (`config.max_depth = 0`) runs that field's own rule at once, so a bad value is never stored; the rules
        between fields wait for the next full check, so that fields which move together can be set one after the
        other. A config.json key that no field knows (a typo such as `max_dept`) is kept, as transformers does, but
        warned about: it would otherwise silently leave the field it meant at its default.
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
        router_gradient: str = "full",
        router_sampling: str = "gumbel",
        compute_penalty: float = 0.01,
        depth_init_bias: float = 3.0,
        iteration_loss_weight: float = 0.0,
        **kwargs,
    ):
        # Derived, so never taken from a saved config.json: the number of layer applications at full depth
        # (transformers' generate sizes a default cache by it).
        kwargs.pop("num_hidden_layers", None)
        self._warn_unknown_keys(kwargs)
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
        self.router_gradient = router_gradient
        self.router_sampling = router_sampling
        self.compute_penalty = compute_penalty
        self.depth_init_bias = depth_init_bias
        self.iteration_loss_weight = iteration_loss_weight
        if head_dim is None and isinstance(hidden_size, int) and isinstance(num_attention_heads, int):
            self.head_dim = hidden_size // num_attention_heads if num_attention_heads > 0 else 0
        # Our checks first: they name the field, where transformers' own validators would not.
        self.validate()
        super().__init__(**kwargs)
        _check_rope(self.rope_parameters)  # once more, as transformers standardized it (rope_scaling, rope_theta)

    def __setattr__(self, key, value):
        # After construction (`_post_init_done` is set last by PreTrainedConfig) every set is checked against
        # the field's own rule before the value is stored.
        if self.__dict__.get("_post_init_done", False):
            _check_field(key, value, getattr(self, "vocab_size", None))
            if key == "rope_parameters" and value is not None:
                # Standardized as when the config is made (and as LlamaConfig does): a missing rope_type is the
                # default rotary embedding, a missing rope_theta the default base, not a KeyError in the model.
                value = {"rope_type": value.get("type", "default"), "rope_theta": self.default_theta, **value}
        super().__setattr__(key, value)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> None:
        # A model's save_pretrained has copied every modeling file beside this config and named its own class in
        # auto_map: name the others, which those files define too. A config saved alone keeps its AutoConfig entry.
        auto_map = getattr(self, "auto_map", None) or {}
        if self._auto_class is not None and set(auto_map) & (set(AUTO_MAP) - {"AutoConfig"}):
            self.auto_map = {**auto_map, **AUTO_MAP}
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    def update(self, config_dict: dict) -> None:
        super().update(config_dict)
        self.validate()

    def update_from_string(self, update_str: str) -> None:
        super().update_from_string(update_str)
        self.validate()

    @staticmethod
    def _warn_unknown_keys(kwargs: dict) -> None:
        known = _BASE_KEYS | {field.name for field in dataclasses.fields(PreTrainedConfig)}
        known |= set(GenerationConfig._get_default_generation_params())
        unknown = sorted(key for key in kwargs if key not in known)
        if unknown:
            warnings.warn(
                f"AniraConfig got unknown keys {unknown}: they are kept as attributes but no part of the model reads "
                "them. Is one of them a misspelt field (e.g. 'max_dept' for 'max_depth')?",
                UserWarning,
                stacklevel=3,
            )

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

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int) -> None:
        # transformers' self-speculative decoding (generate(assistant_early_exit=k)) drafts with the first k layers by
        # setting this; a looped model's drafts come from assistant_model= or prompt_lookup_num_tokens= instead.
        if value != self.num_hidden_layers:
            raise ValueError(
                f"AniraConfig.num_hidden_layers is derived (num_prelude_layers + num_core_layers x max_depth + "
                f"num_coda_layers = {self.num_hidden_layers}) and cannot be set to {value!r}: set those fields. "
                "generate(assistant_early_exit=...) drafts with a prefix of the layer stack, which a looped model does "
                "not have; draft with assistant_model= or prompt_lookup_num_tokens=."
            )

    def layer_applications(self, depth: int) -> int:
        return self.num_prelude_layers + self.num_core_layers * depth + self.num_coda_layers

    def validate(self) -> None:
        """Raise a `ValueError` naming the first field whose value is not allowed: each field's own rule, then the
        rules between fields."""
        for name in _CHECKED_FIELDS:
            _check_field(name, getattr(self, name), self.vocab_size)
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
        if self.halting_objective == "pondernet" and not self.pondernet_prior_depth <= self.max_depth:
            raise ValueError(
                f"AniraConfig.pondernet_prior_depth must be in [1, max_depth={self.max_depth}], "
                f"got {self.pondernet_prior_depth}."
            )


__all__ = ["AniraConfig"]
