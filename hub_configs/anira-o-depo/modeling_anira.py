"""ANIRA: a recurrent, weight-tied Transformer in which every token gets its own depth.

    input_ids -> embed -> prelude (P layers) -> e                     # shallow representation
    h^0 = e
    for t in 1..D:                                                    # D = max_depth
        active tokens:  h^t = core(inject(h^{t-1}, e))                # C weight-tied layers
        frozen tokens:  h^t = h^{t-1}, and they pass every core layer as an identity
    coda (K layers) over each token's final state -> norm -> lm_head

The layers are Llama's (pre-norm, RMSNorm, RoPE, SwiGLU, grouped-query attention through transformers'
attention interface). Which tokens are active is decided by a depth controller (`depth_control.py`);
the loop below knows nothing about which one it runs.

The recurrence here is the dense reference path: every token goes through every layer application
and frozen tokens are masked back to their state, `h <- a * layer(h) + (1 - a) * h`, with the injection
masked too. Because a frozen token's input to every core layer is its unchanging frozen state, the
keys/values it serves at core layer l are the same at every later iteration (docs/design.md's reuse rule);
the cache and the fast inference path rely on that.
"""

import contextlib
import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask, find_packed_sequence_indices, packed_sequence_mask_function
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils.generic import can_return_tuple
from transformers.utils.import_utils import is_tracing

from .cache_anira import AniraCache
from .configuration_anira import MAX_DEPTH_LIMIT, AniraConfig
from .depth_control import DEPTH_CONTROLLERS, AniraRMSNorm, DepthReport, DepthRouter, HaltingHead
from .fast_path import SelectedPositions, fast_recur, layer_at, layer_at_rows
from .generation_anira import AniraGenerationMixin

try:  # FSDP2's marker class (torch >= 2.6)
    from torch.distributed.fsdp import FSDPModule
except ImportError:  # pragma: no cover
    FSDPModule = ()


def _sharded(layers) -> list:
    """The layers FSDP2 (`fully_shard`) shards: it gathers their parameters only around their own forward."""
    return [layer for layer in layers if isinstance(layer, FSDPModule)]


@contextlib.contextmanager
def _gathered(layers):
    """Parameters of FSDP2-sharded layers gathered while code outside their forward reads their parts (the
    frozen keys/values), resharded after."""
    sharded = _sharded(layers)
    for layer in sharded:
        layer.unshard()
    try:
        yield
    finally:
        for layer in sharded:
            layer.reshard()


class AniraRotaryEmbedding(nn.Module):
    """Llama's rotary embedding, every rope type included: the frequencies come from transformers'
    ROPE_INIT_FUNCTIONS, and `dynamic_rope_update` recomputes them for "dynamic" (NTK scaling grows with the
    longest position seen) and picks the long or short factors for "longrope", exactly as in Llama."""

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        # Whether positions past max_position_embeddings mean anything: only when the rope type scales
        # (longrope always switches to its long factors there; the others need a factor above 1).
        factor = config.rope_parameters.get("factor") or 1.0
        self.scales_context = self.rope_type == "longrope" or (self.rope_type != "default" and factor > 1.0)
        rope_init_fn = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: AniraConfig, **kwargs) -> tuple[torch.Tensor, float]:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        return inv_freq, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [batch, heads, seq, head_dim] with cos/sin [batch, seq, head_dim], or token rows x: [N, heads, head_dim]
    with cos/sin [N, head_dim]."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


class AniraMLP(nn.Module):
    def __init__(self, config: AniraConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[batch, kv_heads, seq, dim] -> [batch, kv_heads * n_rep, seq, dim]."""
    if n_rep == 1:
        return hidden_states
    batch, kv_heads, seq, dim = hidden_states.shape
    return hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq, dim).reshape(batch, kv_heads * n_rep, seq, dim)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    # float32 at least (bf16/fp16 safety), float64 kept: a fully masked row (a left-pad query) must stay finite,
    # which a float64 mask minimum cast to float32 (-inf) would not give.
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.promote_types(query.dtype, torch.float32)).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class AniraAttention(nn.Module):
    """Grouped-query attention. One module serves every iteration of a core layer: the cache slot to read
    and write is passed per call (`cache_slot`), not fixed at construction."""

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def project_query(self, hidden_states: torch.Tensor, position_embeddings) -> torch.Tensor:
        """Queries (rotated) [batch, heads, seq, head_dim] of already-normed states [batch, seq, hidden], or
        [N, heads, head_dim] of token rows [N, hidden] (the fast path's gathered tokens; cos/sin [N, head_dim])."""
        # The head counts are written out: a traced forward's row count may be 0, where -1 cannot be inferred.
        q = self.q_proj(hidden_states).view(*hidden_states.shape[:-1], self.q_proj.out_features // self.head_dim,
                                            self.head_dim)
        return apply_rotary(q if q.dim() == 3 else q.transpose(1, 2), *position_embeddings)

    def project_key_value(self, hidden_states: torch.Tensor, position_embeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values [batch, kv_heads, seq, head_dim] of already-normed states [batch, seq, hidden],
        or [N, kv_heads, head_dim] of token rows [N, hidden] (as `project_query`)."""
        shape = (*hidden_states.shape[:-1], self.k_proj.out_features // self.head_dim, self.head_dim)
        k = self.k_proj(hidden_states).view(shape)
        v = self.v_proj(hidden_states).view(shape)
        if k.dim() > 3:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        return apply_rotary(k, *position_embeddings), v

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, **kwargs):
        """Attention and the output projection: [batch, seq, hidden] and the attention weights (eager only)."""
        output, weights = self.mix_heads(query, key, value, attention_mask, **kwargs)
        return self.o_proj(output), weights

    def mix_heads(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, **kwargs):
        """Attention through the chosen backend, before the output projection: [batch, seq, heads * head_dim].
        `attention_implementation` overrides the config's for one call (eager when attention maps are asked for)."""
        implementation = kwargs.pop("attention_implementation", None) or self.config._attn_implementation
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return output.reshape(*output.shape[:2], -1).contiguous(), weights

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        cache_slot: int | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query = self.project_query(hidden_states, position_embeddings)
        key, value = self.project_key_value(hidden_states, position_embeddings)
        if cache is not None:
            key, value = cache.update(key, value, cache_slot)
        return self.attend(query, key, value, attention_mask, **kwargs)


class AniraDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: AniraConfig):
        super().__init__()
        self.self_attn = AniraAttention(config)
        self.mlp = AniraMLP(config)
        self.input_layernorm = AniraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = AniraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def key_value(self, hidden_states: torch.Tensor, position_embeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys/values this layer computes for a token whose input is `hidden_states`."""
        return self.self_attn.project_key_value(self.input_layernorm(hidden_states), position_embeddings)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        cache_slot: int | None = None,
        attention_sink: list | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attn_out, weights = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache, cache_slot, **kwargs
        )
        if attention_sink is not None:
            attention_sink.append(weights)
        return self.after_attention(hidden_states, attn_out)

    def after_attention(self, hidden_states: torch.Tensor, attention_output: torch.Tensor) -> torch.Tensor:
        """The rest of the layer once attention has run (its output projected): the residual, then the MLP block
        with its own residual. The fast path and depth batching, which run attention their own way (gathered
        queries, per-row caches), finish every layer through this too, so the layer's body is written once."""
        hidden_states = hidden_states + attention_output
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))

    def project_rows(self, states: torch.Tensor, frozen_states: torch.Tensor, position_embeddings):
        """The fast path's projections of token rows: the input norm of the computed rows `states` [N, H] and the
        freezing rows `frozen_states` [F, H] together, queries [N, heads, head_dim] of the computed ones, keys and
        values [N + F, kv_heads, head_dim] of all (cos/sin [N + F, head_dim]). One method, so that
        `--compile_layers` compiles it as one graph (one call's overhead, not three)."""
        normed = self.input_layernorm(torch.cat([states, frozen_states]))
        n = states.shape[0]
        cos, sin = position_embeddings
        query = self.self_attn.project_query(normed[:n], (cos[:n], sin[:n]))
        key, value = self.self_attn.project_key_value(normed, position_embeddings)
        return query, key, value

    def project_selected(self, hidden_states: torch.Tensor, index: torch.Tensor, position_embeddings, query_rope):
        """Keys/values [B, kv_heads, S, head_dim] of every position of `hidden_states` [B, S, H] and queries
        [N, heads, head_dim] of the flat positions `index` (their cos/sin `query_rope`): the iteration loss's
        readouts (fast_path.layer_at), one graph under `--compile_layers`."""
        normed = self.input_layernorm(hidden_states)
        key, value = self.self_attn.project_key_value(normed, position_embeddings)
        query = self.self_attn.project_query(normed.reshape(-1, normed.shape[-1]).index_select(0, index), query_rope)
        return query, key, value

    def finish_rows(self, states: torch.Tensor, attention_output: torch.Tensor, active: torch.Tensor | None = None):
        """The output projection and `after_attention` of token rows, then, when `active` [N, 1] is given, the
        training mask's `a * out + (1 - a) * states`: one graph under `--compile_layers`."""
        out = self.after_attention(states, self.self_attn.o_proj(attention_output))
        return out if active is None else active * out + (1 - active) * states


class InjectionAdapter(nn.Linear):
    """The concat injection's W (its own class so `_init_weights` can start it at [I I])."""


class AniraInjection(nn.Module):
    """x = inject(h, e): `add` is h + e; `concat` is W [h; e] with W initialised to [I I] (= add at init)."""

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.mode = config.injection
        if self.mode == "concat":
            self.adapter = InjectionAdapter(2 * config.hidden_size, config.hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, prelude_states: torch.Tensor) -> torch.Tensor:
        if self.mode == "concat":
            return self.adapter(torch.cat([hidden_states, prelude_states], dim=-1))
        return hidden_states + prelude_states


@dataclass
class AniraModelOutput(BaseModelOutputWithPast):
    r"""
    depths (`torch.LongTensor` [batch, seq]): iterations each position ran, the compute spent on predicting
        the next token; -1 at padding.
    depth_probs (`torch.Tensor` [batch, seq, max_depth]): the router distribution (early) or the halting
        distribution (online) over depths 1..max_depth; one-hot at max_depth in fixed mode.
    halting_probs (`torch.Tensor` [batch, seq, max_depth], online only): lambda at each iteration a token ran, 0 elsewhere.
    expected_depth (`torch.Tensor` [batch, seq]): E[d] under `depth_probs`.
    compute_cost (`torch.Tensor` [batch, seq]): each token's compute loss term (E[d] / max_depth by default).
    iteration_readouts (`tuple(torch.Tensor)`, only with `output_iteration_readouts=True`): for each iteration
        t < max_depth, the final-normed coda output [batch, seq, hidden] of the states after iteration t. From
        the iteration where the loop stopped on (no token active after it) the entry is `last_hidden_state` itself.
    """

    depths: torch.LongTensor | None = None
    depth_probs: torch.Tensor | None = None
    halting_probs: torch.Tensor | None = None
    expected_depth: torch.Tensor | None = None
    compute_cost: torch.Tensor | None = None
    iteration_readouts: tuple[torch.Tensor, ...] | None = None


@dataclass
class AniraCausalLMOutput(CausalLMOutputWithPast):
    r"""
    `loss = lm_loss + iteration_loss_weight * iteration_loss + compute_penalty * compute_loss` (the middle
    term only when `config.iteration_loss_weight > 0`). The depth fields are those of `AniraModelOutput`.
    """

    lm_loss: torch.Tensor | None = None
    iteration_loss: torch.Tensor | None = None
    compute_loss: torch.Tensor | None = None
    depths: torch.LongTensor | None = None
    depth_probs: torch.Tensor | None = None
    halting_probs: torch.Tensor | None = None
    expected_depth: torch.Tensor | None = None


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _check_depth_controller(path, kwargs: dict) -> None:
    """Raise a `ValueError` when the depth controller asked for (by `config=` or by keyword overrides) needs weights
    that the checkpoint at `path` does not hold in that shape (`AniraPreTrainedModel.from_pretrained`)."""
    try:
        saved, _ = AniraConfig.get_config_dict(path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    except (OSError, ValueError):
        return  # no readable config here: transformers' own loading says what is wrong
    if saved.get("model_type") != AniraConfig.model_type:
        return  # AniraConfig.from_pretrained names a checkpoint of another model type
    config, defaults = kwargs.get("config"), inspect.signature(AniraConfig.__init__).parameters

    def stored(field: str):
        return saved.get(field, defaults[field].default)

    def asked(field: str):
        value = getattr(config, field, None) if config is not None else kwargs.get(field)
        return stored(field) if value is None else value

    saved_mode, mode = stored("depth_mode"), asked("depth_mode")
    saved_range = (stored("min_depth"), stored("max_depth"))
    depth_range = (asked("min_depth"), asked("max_depth"))
    if mode == "early" and saved_mode == "early" and depth_range != saved_range:
        raise ValueError(
            f"{path} is an early-mode (ANIRA-E) checkpoint whose router scores depths {saved_range[0]}..{saved_range[1]}; "
            f"it cannot be loaded with min_depth={depth_range[0]}, max_depth={depth_range[1]}, since its depth is chosen "
            "once from those logits. Load it with the range it was trained with."
        )
    if mode in ("early", "online") and saved_mode != mode:
        head = "router" if mode == "early" else "halting head"
        raise ValueError(
            f"{path} is a depth_mode={saved_mode!r} checkpoint: it holds no {mode}-mode {head}, so it cannot be "
            f"loaded as depth_mode={mode!r} (the {head} would start at random). Load it as {saved_mode!r} or as 'fixed'."
        )


def captures_row_counts(tensor: torch.Tensor) -> bool:
    """Whether a traced forward selects the supervised positions' rows (their count is data-dependent): only where
    torch.compile captures such counts as graph symbols (`torch._dynamo.config.capture_dynamic_output_shape_ops`,
    which anira_study.trainer.compile_model sets); other traces compute the loss over every position."""
    return is_tracing(tensor) and torch.compiler.is_compiling() and torch._dynamo.config.capture_dynamic_output_shape_ops


def packed_sample_ids(attention_mask, position_ids, cache, past: int, batch: int) -> torch.Tensor | None:
    """Each position's sample [batch, seq] in packed rows (several samples in one row, their position ids restarting
    inside it; anira_study.data.PackedAnswerCollator), or None when no row holds more than one sample, where
    transformers' own detection does not look: it detects packed rows only with no attention mask and no cache,
    while a packed batch's last rows carry a padded tail (a 2D mask) and an evaluation forward builds a cache. Its rule
    is kept: a sample starts where the position ids do not go up by one; only from the start of the sequences
    (`past` 0). With a mask, only real tokens count: a sample starts at a real token whose position is not one past
    the previous real token's, so padding (leading, trailing, or a hole inside a row, to which generate gives
    position 0) starts none, and the tokens after a hole still see those before it, as the mask says."""
    if position_ids is None or past > 0 or (attention_mask is None and cache is None):
        return None
    # Traced (torch.compile), only a training-style chunk (a 2D mask, no cache) is read, without the data-dependent
    # "more than one sample in a row" test: one sample per row gives the causal mask with the padding's keys hidden.
    tracing = is_tracing(position_ids)
    if (attention_mask is not None and attention_mask.dim() != 2) or (tracing and (attention_mask is None or cache is not None)):
        return None
    positions = position_ids.expand(batch, -1)
    if attention_mask is None:
        return find_packed_sequence_indices(positions)
    real = attention_mask[:, -positions.shape[1]:].bool()
    index = torch.arange(positions.shape[1], device=positions.device).expand_as(positions)
    last_real = torch.where(real, index, -1).cummax(-1).values
    previous = torch.nn.functional.pad(last_real[:, :-1], (1, 0), value=-1)  # the real token before each position
    follows = positions == positions.gather(-1, previous.clamp(min=0)) + 1
    starts = real & ((previous < 0) | ~follows)
    if tracing:
        return starts.long().cumsum(-1)
    if bool((starts.sum(-1) <= 1).all()):
        return None
    return starts.long().cumsum(-1)


def packed_training_mask(attention_mask: torch.Tensor, samples: torch.Tensor, implementation: str, dtype: torch.dtype):
    """The 4D mask `create_causal_mask` builds for packed rows with a 2D attention mask and no cache (a training
    batch of PackedAnswerCollator), built directly: a query sees the real keys at or before it in its own sample.
    Equal to transformers' mask (tests/test_packing.py), without its per-element mask functions (about 5 % of a
    packed BREVO training step)."""
    seq = samples.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=samples.device).tril()
    allowed = causal & attention_mask[:, None, -seq:].bool() & (samples[:, :, None] == samples[:, None, :])
    allowed = allowed[:, None]
    if implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


class AniraPreTrainedModel(PreTrainedModel):
    config_class = AniraConfig
    config: AniraConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AniraDecoderLayer"]
    # The recurrence builds explicit 4D masks (subsets of tokens attend to every position), which the eager
    # and SDPA kernels take; flash and flex attention want their own mask formats and are not wired in.
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    # Early and online loops stop on a data-dependent condition (no token active). Fixed mode has none: it exports
    # and compiles with fullgraph=True (tested), but generate's automatic compilation also wants a static cache.
    _can_compile_fullgraph = False
    # A checkpoint loaded in a mode without its controller (any checkpoint as `depth_mode="fixed"`) leaves that
    # controller's weights unused, which is what was asked: no "unexpected keys" report. A controller the mode
    # needs and the checkpoint lacks is an error (`from_pretrained` below).
    _keys_to_ignore_on_load_unexpected = [r"depth_controller\."]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As `PreTrainedModel.from_pretrained`, but a depth controller that the checkpoint's weights cannot fill is
        an error. An early-mode router has one logit per depth `min_depth..max_depth`, so an ANIRA-E checkpoint
        loads only with the range it was trained with; an online-mode halting head exists only in ANIRA-O
        checkpoints. Without this check transformers reports a size mismatch or, with
        `ignore_mismatched_sizes=True` or for a missing head, starts the controller at random. Fixed and online
        checkpoints do take another `max_depth`, `min_depth` or `halting_threshold` (no weight depends on them);
        any checkpoint loads as `depth_mode="fixed"`."""
        if pretrained_model_name_or_path is not None:
            _check_depth_controller(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The controllers start at max_depth (docs/design.md: learn the task with full compute first, then let
        # the penalty cut it); the concat adapter starts as the additive injection.
        super()._init_weights(module)
        if isinstance(module, InjectionAdapter):
            eye = torch.eye(module.out_features, dtype=module.weight.dtype, device=module.weight.device)
            init.copy_(module.weight, torch.cat([eye, eye], dim=1))
        elif isinstance(module, DepthRouter):
            bias = torch.zeros_like(module.bias)
            bias[-1] = self.config.depth_init_bias
            init.copy_(module.bias, bias)
        elif isinstance(module, HaltingHead):
            init.constant_(module.bias, -self.config.depth_init_bias)


class AniraModel(AniraPreTrainedModel):
    def __init__(self, config: AniraConfig):
        config.validate()  # the rules between fields: fields set one by one since the config was made are checked here
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.prelude = nn.ModuleList([AniraDecoderLayer(config) for _ in range(config.num_prelude_layers)])
        self.injection = AniraInjection(config)
        self.core = nn.ModuleList([AniraDecoderLayer(config) for _ in range(config.num_core_layers)])
        self.coda = nn.ModuleList([AniraDecoderLayer(config) for _ in range(config.num_coda_layers)])
        self.depth_controller = DEPTH_CONTROLLERS[config.depth_mode](config)
        self.norm = AniraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = AniraRotaryEmbedding(config)
        self.gradient_checkpointing = False
        # "fast": at inference (eval mode) only active tokens are computed (fast_path.py); "dense": always the
        # masked reference `recur`. Training, output_attentions and FSDP-sharded core layers use the reference.
        self.recurrence = "fast"
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    # input checks ----------------------------------------------------------------------------------
    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, max_depth) -> None:
        """A clear `ValueError` for inputs the model cannot give a meaningful result for. Checks that read tensor
        values (token ids, mask values, position ids) are skipped under torch.compile / torch.export, where
        they would be data-dependent branches; shapes are always checked."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        name, inputs = ("input_ids", input_ids) if input_ids is not None else ("inputs_embeds", inputs_embeds)
        if inputs.dim() != (2 if input_ids is not None else 3):
            shape = "[batch, seq]" if input_ids is not None else "[batch, seq, hidden_size]"
            raise ValueError(
                f"{name} must be {shape}, got shape {tuple(inputs.shape)}"
                + (": add the batch dimension (input_ids[None])." if inputs.dim() == 1 else ".")
            )
        batch, seq_len = inputs.shape[:2]
        if batch == 0 or seq_len == 0:
            raise ValueError(f"{name} is empty (shape {tuple(inputs.shape)}): a forward needs at least one token.")
        if inputs_embeds is not None and inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds has width {inputs_embeds.shape[-1]}, the model's hidden_size is {self.config.hidden_size}."
            )
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None:
            batches = (batch, 1) if attention_mask.dim() == 4 else (batch,)  # a prepared 4D mask may broadcast
            if attention_mask.dim() not in (2, 4) or attention_mask.shape[0] not in batches:
                raise ValueError(
                    f"attention_mask must be [batch={batch}, positions] (or a prepared 4D mask), "
                    f"got shape {tuple(attention_mask.shape)}."
                )
            if attention_mask.dim() == 2 and attention_mask.shape[-1] != past + seq_len:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the cache holds {past} and "
                    f"{seq_len} are new: it must cover all {past + seq_len}."
                )
        if position_ids is not None and (
            position_ids.dim() != 2 or position_ids.shape[0] not in (1, batch) or position_ids.shape[1] != seq_len
        ):
            raise ValueError(
                f"position_ids must be [batch={batch} or 1, seq={seq_len}], got shape {tuple(position_ids.shape)}."
            )
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not (
            self.config.min_depth <= max_depth <= MAX_DEPTH_LIMIT
        ):
            raise ValueError(
                f"max_depth must be an integer in [min_depth={self.config.min_depth}, {MAX_DEPTH_LIMIT}], "
                f"got {max_depth!r}."
            )
        if is_tracing(inputs):
            return
        if input_ids is not None:
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"input_ids contains token id {bad}, outside the vocabulary [0, {self.config.vocab_size}) "
                    "of this model: was the sequence encoded with another tokenizer?"
                )
        if attention_mask is not None and attention_mask.dim() == 2:
            if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
                raise ValueError(
                    "attention_mask must hold 0 (padding) and 1 (token) only, "
                    f"got values {attention_mask.unique().tolist()}."
                )
        highest = past + seq_len - 1
        if position_ids is not None:
            low, highest = int(position_ids.min()), int(position_ids.max())
            if low < 0:
                raise ValueError(f"position_ids must be at least 0, got {low}.")
        # Positions past max_position_embeddings are taken as Llama takes them: the rotary frequencies are defined
        # at every position, only no training reached those (a scaling rope type is what makes them meaningful).
        if highest >= self.config.max_position_embeddings and not self.rotary_emb.scales_context:
            warnings.warn(
                f"Position {highest} is past max_position_embeddings={self.config.max_position_embeddings}: the "
                "unscaled rotary embedding extrapolates there (rope_parameters with rope_type 'linear', 'dynamic', "
                "'yarn', ... scale it to longer inputs).",
                UserWarning,
                stacklevel=3,
            )

    def _prepare_cache(self, cache: Cache | None, use_cache: bool, max_depth: int) -> AniraCache | None:
        """Our own cache when none or an empty cache of another kind (generate's default) is passed. An AniraCache
        serves any depth budget: its iteration slots are added as iterations first run (cache_anira.py)."""
        if not use_cache:
            return None
        if isinstance(cache, AniraCache):
            cache.max_depth = max(cache.max_depth, max_depth)
            return cache
        if cache is not None and cache.get_seq_length() > 0:
            raise ValueError(
                f"The {type(cache).__name__} passed in already holds {cache.get_seq_length()} positions; ANIRA needs "
                "its own AniraCache (slots per iteration and core layer): start with no cache or an AniraCache."
            )
        return AniraCache(self.config, max_depth=max(max_depth, self.config.max_depth))

    # forward ---------------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        max_depth: int | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        output_iteration_readouts: bool = False,
        readout_positions: torch.Tensor | None = None,
        **kwargs,
    ) -> AniraModelOutput:
        r"""
        max_depth (`int`, *optional*): the depth budget of this call (default `config.max_depth`, at most
            `MAX_DEPTH_LIMIT`). Fixed and online models can be given more iterations than they were trained
            with; early models cannot.
        output_hidden_states: returns 1 + P + max_depth + K states: the embeddings, each prelude layer's output,
            the state after each of the budget's `max_depth` iterations, each coda layer's output. The length
            depends on the config and the call's budget only, never on the batch (transformers' batching
            equivalence): at an iteration a token did not run (it had halted, or the loop had stopped because no
            token of the batch was active) its entry is its frozen state.
        output_attentions: returns P + C * max_depth + K maps [batch, heads, seq, keys], one per layer application
            in the same order. At an iteration a token did not run, its row is zero (so is every row of an
            iteration no token ran). The maps need the eager kernel: on an SDPA model this call's attention runs
            eagerly (with a warning; the result is the same up to rounding).
        output_iteration_readouts: also runs the coda and the final norm over the states after each iteration
            t < max_depth (`iteration_readouts`; the iteration loss reads them). Needs a forward from the start
            of the sequence: the readouts attend to this call's tokens only.
        readout_positions (`torch.BoolTensor` [batch, seq], *optional*): with `output_iteration_readouts`, read
            out only these positions: each readout before the loop stopped is then [N, hidden], the N positions in
            row-major order (the iteration loss reads the supervised positions only; the coda's last layer runs
            its queries and MLP there, exactly as over the whole sequence). A traced forward (`captures_row_counts`)
            passes their flat indices [N] instead (`layer_at_rows`: no data-dependent packing).
        return_dict: `False` returns a tuple of the output's non-None fields, in order (as Llama).
        """
        if cache is None:
            cache = kwargs.pop("past_key_values", None)  # the pre-5.24 name
        else:
            kwargs.pop("past_key_values", None)
        max_depth = self.config.max_depth if max_depth is None else max_depth
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        self._check_inputs(input_ids, inputs_embeds, attention_mask, position_ids, cache, max_depth)
        if output_iteration_readouts and cache is not None and cache.get_seq_length() > 0:
            raise ValueError(
                "output_iteration_readouts=True needs a forward over the whole sequence, but the cache already "
                f"holds {cache.get_seq_length()} positions."
            )
        cache = self._prepare_cache(cache, use_cache, max_depth)
        mask_config = self.config
        if output_attentions and self.config._attn_implementation != "eager":
            warnings.warn(
                f"output_attentions=True: attn_implementation={self.config._attn_implementation!r} returns no "
                "attention weights, so this call's attention runs through the eager kernel.",
                UserWarning,
                stacklevel=2,
            )
            mask_config = copy.copy(self.config)  # the eager kernel wants its own (additive) mask format
            mask_config._attn_implementation = "eager"
            kwargs["attention_implementation"] = "eager"

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        past = cache.get_seq_length() if cache is not None else 0
        token_mask, mask, position_embeddings = self._masks_and_positions(
            inputs_embeds, attention_mask, position_ids, cache, past, mask_config)
        attention_sink = [] if output_attentions else None
        layer_kwargs = dict(attention_mask=mask, position_embeddings=position_embeddings, cache=cache,
                            attention_sink=attention_sink, **kwargs)
        all_hidden = [inputs_embeds] if output_hidden_states or output_iteration_readouts else None

        hidden = self._run_stack(self.prelude, inputs_embeds, cache, cache.prelude_slot if cache is not None else None,
                                 layer_kwargs, all_hidden)
        prelude_states = hidden

        if self.recurrence not in ("fast", "dense"):
            raise ValueError(f"AniraModel.recurrence must be 'fast' or 'dense', got {self.recurrence!r}.")
        # The fast path calls the core layers' parts, not their forward: under FSDP2 those stay sharded, so a
        # sharded model runs the dense path, and so does training with gradient checkpointing (which wraps the
        # layers' forward). Attention maps come from the dense path too.
        checkpointing = self.training and any(getattr(layer, "gradient_checkpointing", False) for layer in self.core)
        fast = self.recurrence == "fast" and not output_attentions and not checkpointing and not _sharded(self.core)
        # Traced, a controller whose training loop reads no tensor value (ANIRA-E's exact router gradient) traces too.
        static = torch.compiler.is_compiling() and getattr(self.depth_controller, "static_in_training", lambda: False)()
        loop = self.eager_depth_loop if self.depth_controller.data_dependent and not static else self.depth_loop
        hidden, report = loop(hidden, prelude_states, token_mask, max_depth, cache, layer_kwargs, all_hidden, fast)
        ran = self._fill_to_budget(hidden, all_hidden, attention_sink, max_depth, past)
        readouts = None
        if output_iteration_readouts:
            # From iteration `ran` on every state is the final one, whose readout is this forward's own output
            # (filled in below): only the iterations before it need a coda pass of their own.
            first = 1 + self.config.num_prelude_layers
            readout_kwargs = {**layer_kwargs, "cache": None, "attention_sink": None}
            if readout_positions is not None and len(self.coda) and readout_positions.dtype == torch.bool:  # packed
                readout_positions = SelectedPositions(readout_positions, readout_kwargs, self.config)
            readouts = [self.readout(state, readout_kwargs, readout_positions)
                        for state in all_hidden[first:first + min(ran, max_depth) - 1]]
            if not output_hidden_states:
                all_hidden = None

        hidden = self._run_stack(self.coda, hidden, cache, cache.coda_slot if cache is not None else None,
                                 layer_kwargs, all_hidden)
        last_hidden_state = self.norm(hidden)
        if readouts is not None:
            readouts = tuple(readouts) + (last_hidden_state,) * (max_depth - 1 - len(readouts))
        return AniraModelOutput(
            last_hidden_state=last_hidden_state,
            cache=cache,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(attention_sink) if attention_sink is not None else None,
            depths=report.depths,
            depth_probs=report.depth_probs,
            halting_probs=report.halting_probs,
            expected_depth=report.expected_depth,
            compute_cost=report.compute_cost,
            iteration_readouts=readouts,
        )

    @staticmethod
    def _run_stack(layers, hidden, cache, slot, layer_kwargs: dict, all_hidden) -> torch.Tensor:
        """The untied prelude or coda layers in order (`slot(index)`: each layer's cache slot), each output appended
        to `all_hidden` when hidden states are collected."""
        for index, layer in enumerate(layers):
            hidden = layer(hidden, cache_slot=None if cache is None else slot(index), **layer_kwargs)
            if all_hidden is not None:
                all_hidden.append(hidden)
        return hidden

    def _fill_to_budget(self, hidden, all_hidden, attention_sink, max_depth: int, past: int) -> int | None:
        """Outputs of one length whatever the batch: the iterations after the loop stopped hold every token's frozen
        state, and zero attention maps (no token ran them). Returns the iterations the loop ran (None when no
        states are collected)."""
        prelude = self.config.num_prelude_layers
        ran = None
        if all_hidden is not None:
            ran = len(all_hidden) - 1 - prelude
            all_hidden.extend([hidden] * (1 + prelude + max_depth - len(all_hidden)))
        if attention_sink is not None:
            missing = prelude + self.config.num_core_layers * max_depth - len(attention_sink)
            if missing > 0:
                batch, seq_len = hidden.shape[:2]
                zeros = hidden.new_zeros(batch, self.config.num_attention_heads, seq_len, past + seq_len)
                attention_sink.extend([zeros] * missing)
        return ran

    def _masks_and_positions(self, inputs_embeds, attention_mask, position_ids, cache, past: int, mask_config):
        """(token_mask [batch, seq]: real tokens; the 4D attention mask, or None where the kernel's causal default
        serves; the rotary cos/sin) of this chunk. Without position ids, left padding's positions count real tokens
        only; position ids given that restart inside a row mark packed samples (`packed_sample_ids`)."""
        batch, seq_len = inputs_embeds.shape[:2]
        given_positions = position_ids
        if attention_mask is not None and attention_mask.dim() == 2:
            token_mask = attention_mask[:, -seq_len:].bool()
            if position_ids is None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq_len:]
        else:
            token_mask = torch.ones(batch, seq_len, dtype=torch.bool, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = torch.arange(past, past + seq_len, device=inputs_embeds.device).unsqueeze(0).expand(batch, -1)
        samples = packed_sample_ids(attention_mask, given_positions, cache, past, batch)
        implementation = mask_config._attn_implementation
        if samples is not None and cache is None and attention_mask is not None and implementation in ("sdpa", "eager"):
            mask = packed_training_mask(attention_mask, samples, implementation, inputs_embeds.dtype)
        else:
            mask = create_causal_mask(
                config=mask_config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                position_ids=position_ids,
                and_mask_function=None if samples is None else packed_sequence_mask_function(samples),
            )
        return token_mask, mask, self.rotary_emb(inputs_embeds, position_ids)

    def depth_loop(self, hidden, prelude_states, token_mask, max_depth: int, cache, layer_kwargs: dict, all_hidden,
                   fast: bool) -> tuple[torch.Tensor, DepthReport]:
        """The controller's plan, the recurrence it drives (fast or dense), and the plan's report, which the cache
        records."""
        plan = self.depth_controller.plan(prelude_states, token_mask, max_depth)
        recur = self.recur_fast if fast else self.recur
        hidden = recur(hidden, prelude_states, plan, max_depth, cache, layer_kwargs, all_hidden)
        report: DepthReport = plan.report()
        if cache is not None:
            cache.record_depths(report.depths)
        return hidden, report

    @torch.compiler.disable
    def eager_depth_loop(self, *args) -> tuple[torch.Tensor, DepthReport]:
        """`depth_loop` kept out of torch.compile's graphs (early and online controllers): its iteration count and
        the fast path's gathering follow the tokens' depths, so a traced loop would break its graph at every such
        value and recompile whenever the depths change (each call, until the recompile limit). Left eager, it
        costs what an eager forward's loop costs, and the rest of the forward (embedding, prelude, coda, head)
        compiles once per input shape."""
        return self.depth_loop(*args)

    def readout(self, hidden: torch.Tensor, layer_kwargs: dict, positions=None) -> torch.Tensor:
        """The coda and the final norm over recurrent states `hidden` (no cache): what the head would read if
        the recurrence stopped there; at `positions` only ([N, hidden]) when given (a bool [batch, seq], or with a
        coda their `SelectedPositions`)."""
        coda = list(self.coda)
        if positions is not None and coda:
            for layer in coda[:-1]:
                hidden = layer(hidden, cache_slot=None, **layer_kwargs)
            if torch.is_tensor(positions) and positions.dtype != torch.bool:  # flat indices: a traced forward's
                return self.norm(layer_at_rows(coda[-1], hidden, positions, layer_kwargs, self.config))
            return self.norm(layer_at(coda[-1], hidden, positions, layer_kwargs, self.config))
        for layer in coda:
            hidden = layer(hidden, cache_slot=None, **layer_kwargs)
        return self.norm(hidden) if positions is None else self.norm(hidden)[positions]

    def recur_fast(self, hidden, prelude_states, plan, max_depth: int, cache, layer_kwargs: dict, all_hidden) -> torch.Tensor:
        """The same recurrence computing only the active tokens (fast_path.py); tested equal to `recur`."""
        return fast_recur(self, hidden, prelude_states, plan, max_depth, cache, layer_kwargs, all_hidden)

    def recur(self, hidden, prelude_states, plan, max_depth: int, cache, layer_kwargs: dict, all_hidden) -> torch.Tensor:
        """The dense reference recurrence: every token through every layer, frozen ones masked back."""
        ran = 0
        for t in range(1, max_depth + 1):
            if not plan.any_active(t):
                break
            hidden = self.dense_iteration(t, hidden, prelude_states, plan.active(t), cache, layer_kwargs)
            plan.observe(t, hidden)
            ran = t
            if all_hidden is not None:
                all_hidden.append(hidden)
        if cache is not None:
            self.write_frozen_slots(hidden, ran + 1, cache, layer_kwargs["position_embeddings"])
        return hidden

    def dense_iteration(self, t: int, hidden, prelude_states, active, cache, layer_kwargs: dict) -> torch.Tensor:
        """Iteration t for every token: `h <- a * layer(h) + (1 - a) * h` per core layer, the injection masked
        too (`active` None: every token runs, no masking work)."""
        attention_sink = layer_kwargs["attention_sink"]
        x = self.injection(hidden, prelude_states)
        if active is None:
            hidden = x
            for index, layer in enumerate(self.core):
                hidden = layer(hidden, cache_slot=None if cache is None else cache.core_slot(t, index), **layer_kwargs)
            return hidden
        a = active.to(hidden.dtype).unsqueeze(-1)
        hidden = a * x + (1 - a) * hidden  # exact: a is 0 or 1 in the forward pass
        for index, layer in enumerate(self.core):
            out = layer(hidden, cache_slot=None if cache is None else cache.core_slot(t, index), **layer_kwargs)
            hidden = a * out + (1 - a) * hidden
            if attention_sink is not None:  # a token that did not run this iteration has a zero row
                attention_sink[-1] = attention_sink[-1] * (active > 0.5).to(hidden.dtype)[:, None, :, None]
        return hidden

    def write_frozen_slots(self, hidden: torch.Tensor, first_iteration: int, cache: AniraCache, position_embeddings) -> None:
        """After the loop stops every token is frozen: its keys/values at core layer l in the iteration slots
        from first_iteration on are those of its frozen state (the reuse rule), computed once per layer. Slot
        first_iteration is written even when no iteration of the budget reaches it: the cache's last iteration
        slot holds every position's frozen keys/values, which a later chunk that runs deeper copies into the
        slots it adds (cache_anira.py)."""
        last = max(cache.iterations, first_iteration)
        with _gathered(self.core):
            for index, layer in enumerate(self.core):
                key, value = layer.key_value(hidden, position_embeddings)
                for t in range(first_iteration, last + 1):
                    cache.update(key, value, cache.core_slot(t, index))


class AniraForCausalLM(AniraPreTrainedModel, AniraGenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: AniraConfig):
        super().__init__(config)
        self.model = AniraModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        max_depth: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> AniraCausalLMOutput:
        r"""
        labels: next-token targets [batch, seq] (the model shifts them); -100 is ignored.
        output_attentions, output_hidden_states: as in `AniraModel.forward` (named here, as Llama names them, so
            that transformers' attention-backend tests find them).
        shift_labels (*optional*, in kwargs): targets already shifted, [batch, seq], as sequence/context-parallel
            training passes them (each rank holds a slice of the sequence, so it cannot shift its labels itself);
            used instead of `labels` by both losses.
        max_depth: the depth budget of this call (see `AniraModel.forward`).
        return_dict: `False` returns a tuple of the output's non-None fields, in order (as Llama).

        The loss is `lm_loss + compute_penalty * compute_loss`. `lm_loss` is `self.loss_function`, which
        divides by `num_items_in_batch` (the supervised tokens of the whole accumulated batch) when the
        Trainer passes it. `compute_loss` sums each real token's compute cost (E[d] / max_depth) and divides
        by the same count, so it is "compute per supervised token": under gradient accumulation each
        micro-batch contributes exactly its share and the gradient equals that of one large batch, which
        a per-micro-batch mean could not give. Its size relative to the mean over real tokens is the ratio of
        real to supervised tokens (`expected_depth` and `depths` give the plain per-token numbers).
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)
        supervised = labels is not None or shift_labels is not None
        readouts = supervised and self.config.iteration_loss_weight > 0
        rows = None  # the positions that have a target (not under torch.compile: their number is data-dependent)
        if supervised:
            shifted = shift_labels if shift_labels is not None else nn.functional.pad(labels[..., 1:], (0, 1), value=-100)
            supervised_positions = shifted != -100
            if not is_tracing(shifted) and bool(supervised_positions.any()):
                rows = supervised_positions
            elif captures_row_counts(shifted):  # traced: their count is a symbol of the graph
                rows = supervised_positions
            if rows is not None:  # the supervised positions, flat (row-major), and their targets [1, N]
                flat_rows = rows.reshape(-1).nonzero().squeeze(-1)
                row_targets = shifted.reshape(-1).index_select(0, flat_rows)[None]
        if readouts and rows is not None:  # the iteration loss reads its readouts at the supervised positions only
            kwargs["readout_positions"] = flat_rows if is_tracing(rows) else rows
        inputs = input_ids if input_ids is not None else inputs_embeds
        for name, targets in (("labels", labels), ("shift_labels", shift_labels)):
            if targets is not None and inputs is not None and tuple(targets.shape) != tuple(inputs.shape[:2]):
                raise ValueError(
                    f"{name} must have the shape of the inputs {tuple(inputs.shape[:2])}, got {tuple(targets.shape)}."
                )
        outputs: AniraModelOutput = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            max_depth=max_depth,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_iteration_readouts=readouts,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])

        loss = lm_loss = iteration_loss = compute_loss = None
        if supervised:

            def lm(logits):
                if rows is not None and logits.dim() == 2:  # the supervised positions' logits [N, vocab]
                    logits, targets = logits[None], row_targets
                    return self.loss_function(logits=logits, labels=None, vocab_size=self.config.vocab_size,
                                              num_items_in_batch=num_items_in_batch, shift_labels=targets)
                return self.loss_function(
                    logits=logits, labels=labels, vocab_size=self.config.vocab_size,
                    num_items_in_batch=num_items_in_batch, shift_labels=shift_labels,
                )

            # The loss reads the supervised positions only (the same terms; no log-softmax over the others).
            if rows is not None and logits.shape[1] == rows.shape[1]:  # (index_select: boolean indexing's rows, faster)
                lm_loss = lm(logits.reshape(-1, logits.shape[-1]).index_select(0, flat_rows))
            else:
                lm_loss = lm(logits)
            compute_loss = self.compute_loss(outputs.compute_cost, outputs.depths, shifted, num_items_in_batch)
            loss = lm_loss + self.config.compute_penalty * compute_loss
            if outputs.iteration_readouts:  # max_depth 1 has no iteration before the last
                # A readout that is the final state (the loop had stopped) has the LM loss already computed; the
                # others hold the supervised positions' rows (all positions when `rows` is None).
                losses = [lm_loss if state is hidden else lm(self.lm_head(state if state.dim() == 2 else state[:, keep, :]))
                          for state in outputs.iteration_readouts]
                iteration_loss = torch.stack(losses).mean()
                loss = loss + self.config.iteration_loss_weight * iteration_loss

        return AniraCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            lm_loss=lm_loss,
            iteration_loss=iteration_loss,
            compute_loss=compute_loss,
            depths=outputs.depths,
            depth_probs=outputs.depth_probs,
            halting_probs=outputs.halting_probs,
            expected_depth=outputs.expected_depth,
        )

    @staticmethod
    def compute_loss(compute_cost, depths, targets, num_items_in_batch=None) -> torch.Tensor:
        """Sum of real tokens' compute cost / number of supervised tokens (see `forward`). `targets` are the
        shifted labels, the targets the LM loss counts. With no supervised token at all (every target -100, and
        no `num_items_in_batch` from the Trainer) the divisor is 1, so the compute loss stays finite (the sum)
        where a mean over nothing would be NaN."""
        real = depths >= 0
        total = torch.where(real, compute_cost, torch.zeros_like(compute_cost)).sum()
        if num_items_in_batch is None:
            num_items_in_batch = (targets != -100).sum()
        if torch.is_tensor(num_items_in_batch):
            return total / num_items_in_batch.to(total.device).clamp(min=1)
        return total / max(num_items_in_batch, 1)


__all__ = ["AniraPreTrainedModel", "AniraModel", "AniraForCausalLM", "AniraModelOutput", "AniraCausalLMOutput"]
