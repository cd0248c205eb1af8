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
keys/values it serves at core layer l are the same at every later iteration (DESIGN.md's reuse rule);
the cache and the fast inference path rely on that.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

from .cache_anira import AniraCache
from .configuration_anira import AniraConfig
from .depth_control import DEPTH_CONTROLLERS, AniraRMSNorm, DepthReport, DepthRouter, HaltingHead
from .fast_path import fast_recur
from .generation_anira import AniraGenerationMixin


class AniraRotaryEmbedding(nn.Module):
    def __init__(self, config: AniraConfig):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
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
    def forward(self, x: torch.Tensor, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [batch, heads, seq, head_dim]; cos/sin: [batch, seq, head_dim]."""
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
        q = self.q_proj(hidden_states).view(*hidden_states.shape[:-1], -1, self.head_dim).transpose(1, 2)
        return apply_rotary(q, *position_embeddings)

    def project_key_value(self, hidden_states: torch.Tensor, position_embeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values [batch, kv_heads, seq, head_dim] of already-normed states."""
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        return apply_rotary(k, *position_embeddings), v

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, **kwargs):
        """Attention and the output projection: [batch, seq, hidden] and the attention weights (eager only)."""
        output, weights = self.mix_heads(query, key, value, attention_mask, **kwargs)
        return self.o_proj(output), weights

    def mix_heads(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, **kwargs):
        """Attention through the chosen backend, before the output projection: [batch, seq, heads * head_dim]."""
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
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
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


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
    """

    depths: torch.LongTensor | None = None
    depth_probs: torch.Tensor | None = None
    halting_probs: torch.Tensor | None = None
    expected_depth: torch.Tensor | None = None
    compute_cost: torch.Tensor | None = None


@dataclass
class AniraCausalLMOutput(CausalLMOutputWithPast):
    r"""
    `loss = lm_loss + compute_penalty * compute_loss`. The depth fields are those of `AniraModelOutput`.
    """

    lm_loss: torch.Tensor | None = None
    compute_loss: torch.Tensor | None = None
    depths: torch.LongTensor | None = None
    depth_probs: torch.Tensor | None = None
    halting_probs: torch.Tensor | None = None
    expected_depth: torch.Tensor | None = None


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
    _can_compile_fullgraph = False  # the loop stops on a data-dependent condition (no token active)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The controllers start at max_depth (DESIGN.md: learn the task with full compute first, then let
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
        # masked reference `recur`. Training and output_attentions always use the reference.
        self.recurrence = "fast"
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    # input checks ----------------------------------------------------------------------------------
    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, cache, max_depth: int) -> None:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if input_ids is not None and input_ids.numel() > 0:
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"input_ids contains token id {bad}, outside the vocabulary [0, {self.config.vocab_size}) "
                    "of this model: was the sequence encoded with another tokenizer?"
                )
        seq_len = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if past + seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {past + seq_len} (cached {past} + new {seq_len}) exceeds "
                f"max_position_embeddings={self.config.max_position_embeddings}."
            )
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] != past + seq_len:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions but the cache holds {past} and "
                f"{seq_len} are new: it must cover all {past + seq_len}."
            )
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < self.config.min_depth:
            raise ValueError(f"max_depth must be an integer >= min_depth={self.config.min_depth}, got {max_depth!r}.")

    def _prepare_cache(self, cache: Cache | None, use_cache: bool, max_depth: int) -> AniraCache | None:
        """Our own cache when none, a transformers default one (generate's) or an empty too-small one is passed."""
        if not use_cache:
            return None
        if isinstance(cache, AniraCache) and cache.max_depth >= max_depth:
            return cache
        if cache is not None and cache.get_seq_length() > 0:
            held = cache.max_depth if isinstance(cache, AniraCache) else "unknown"
            raise ValueError(
                f"The cache passed in is already filled and has slots for max_depth={held}, but this call "
                f"runs up to max_depth={max_depth}: start generation with the larger budget instead."
            )
        return AniraCache(self.config, max_depth=max(max_depth, self.config.max_depth))

    # forward ---------------------------------------------------------------------------------------
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
        **kwargs,
    ) -> AniraModelOutput:
        r"""
        max_depth (`int`, *optional*): the depth budget of this call (default `config.max_depth`). Fixed and
            online models can be given more iterations than they were trained with; early models cannot.
        output_hidden_states: returns (embeddings, each prelude layer's output, the state after each
            iteration that ran, each coda layer's output).
        """
        if cache is None:
            cache = kwargs.pop("past_key_values", None)  # the pre-5.24 name
        else:
            kwargs.pop("past_key_values", None)
        max_depth = self.config.max_depth if max_depth is None else max_depth
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError("output_attentions=True needs attn_implementation='eager' (SDPA returns no weights).")
        self._check_inputs(input_ids, inputs_embeds, attention_mask, cache, max_depth)
        cache = self._prepare_cache(cache, use_cache, max_depth)

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, seq_len = inputs_embeds.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() == 2:
            token_mask = attention_mask[:, -seq_len:].bool()
            if position_ids is None:  # left padding: positions count real tokens only
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq_len:]
        else:
            token_mask = torch.ones(batch, seq_len, dtype=torch.bool, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = torch.arange(past, past + seq_len, device=inputs_embeds.device).unsqueeze(0).expand(batch, -1)

        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids)
        attention_sink = [] if output_attentions else None
        layer_kwargs = dict(attention_mask=mask, position_embeddings=position_embeddings, cache=cache,
                            attention_sink=attention_sink, **kwargs)
        all_hidden = [inputs_embeds] if output_hidden_states else None

        hidden = inputs_embeds
        for index, layer in enumerate(self.prelude):
            hidden = layer(hidden, cache_slot=None if cache is None else cache.prelude_slot(index), **layer_kwargs)
            if all_hidden is not None:
                all_hidden.append(hidden)
        prelude_states = hidden

        plan = self.depth_controller.plan(prelude_states, token_mask, max_depth)
        if self.recurrence not in ("fast", "dense"):
            raise ValueError(f"AniraModel.recurrence must be 'fast' or 'dense', got {self.recurrence!r}.")
        fast = self.recurrence == "fast" and not self.training and not output_attentions
        recur = self.recur_fast if fast else self.recur
        hidden = recur(hidden, prelude_states, plan, max_depth, cache, layer_kwargs, all_hidden)
        report: DepthReport = plan.report()
        if cache is not None:
            cache.record_depths(report.depths)

        for index, layer in enumerate(self.coda):
            hidden = layer(hidden, cache_slot=None if cache is None else cache.coda_slot(index), **layer_kwargs)
            if all_hidden is not None:
                all_hidden.append(hidden)

        return AniraModelOutput(
            last_hidden_state=self.norm(hidden),
            cache=cache,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(attention_sink) if attention_sink is not None else None,
            depths=report.depths,
            depth_probs=report.depth_probs,
            halting_probs=report.halting_probs,
            expected_depth=report.expected_depth,
            compute_cost=report.compute_cost,
        )

    def recur_fast(self, hidden, prelude_states, plan, max_depth: int, cache, layer_kwargs: dict, all_hidden) -> torch.Tensor:
        """The same recurrence computing only the active tokens (fast_path.py); tested equal to `recur`."""
        return fast_recur(self, hidden, prelude_states, plan, max_depth, cache, layer_kwargs, all_hidden)

    def recur(self, hidden, prelude_states, plan, max_depth: int, cache, layer_kwargs: dict, all_hidden) -> torch.Tensor:
        """The dense reference recurrence: every token through every layer, frozen ones masked back."""
        ran = 0
        for t in range(1, max_depth + 1):
            if not plan.any_active(t):
                break
            active = plan.active(t)
            x = self.injection(hidden, prelude_states)
            if active is None:  # every token runs: no masking work
                hidden = x
                for index, layer in enumerate(self.core):
                    hidden = layer(hidden, cache_slot=None if cache is None else cache.core_slot(t, index), **layer_kwargs)
            else:
                a = active.to(hidden.dtype).unsqueeze(-1)
                hidden = a * x + (1 - a) * hidden  # exact: a is 0 or 1 in the forward pass
                for index, layer in enumerate(self.core):
                    out = layer(hidden, cache_slot=None if cache is None else cache.core_slot(t, index), **layer_kwargs)
                    hidden = a * out + (1 - a) * hidden
            plan.observe(t, hidden)
            ran = t
            if all_hidden is not None:
                all_hidden.append(hidden)
        if cache is not None:
            self.write_frozen_slots(hidden, ran + 1, cache, layer_kwargs["position_embeddings"])
        return hidden

    def write_frozen_slots(self, hidden: torch.Tensor, first_iteration: int, cache: AniraCache, position_embeddings) -> None:
        """After the loop stops every token is frozen: its keys/values at iterations first_iteration..D of
        core layer l are those of its frozen state (the reuse rule), computed once per layer."""
        if first_iteration > cache.max_depth:
            return
        for index, layer in enumerate(self.core):
            key, value = layer.key_value(hidden, position_embeddings)
            for t in range(first_iteration, cache.max_depth + 1):
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
        return_dict: bool | None = None,
        **kwargs,
    ) -> AniraCausalLMOutput:
        r"""
        labels: next-token targets (the model shifts them); -100 is ignored.
        max_depth: the depth budget of this call (see `AniraModel.forward`).

        The loss is `lm_loss + compute_penalty * compute_loss`. `lm_loss` is `self.loss_function`, which
        divides by `num_items_in_batch` (the supervised tokens of the whole accumulated batch) when the
        Trainer passes it. `compute_loss` sums each real token's compute cost (E[d] / max_depth) and divides
        by the same count, so it is "compute per supervised token": under gradient accumulation each
        micro-batch contributes exactly its share and the gradient equals that of one large batch, which
        a per-micro-batch mean could not give. Its size relative to the mean over real tokens is the ratio of
        real to supervised tokens (`expected_depth` and `depths` give the plain per-token numbers).
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs: AniraModelOutput = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            max_depth=max_depth,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])

        loss = lm_loss = compute_loss = None
        if labels is not None:
            lm_loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, num_items_in_batch=num_items_in_batch
            )
            compute_loss = self.compute_loss(outputs.compute_cost, outputs.depths, labels, num_items_in_batch)
            loss = lm_loss + self.config.compute_penalty * compute_loss

        return AniraCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            lm_loss=lm_loss,
            compute_loss=compute_loss,
            depths=outputs.depths,
            depth_probs=outputs.depth_probs,
            halting_probs=outputs.halting_probs,
            expected_depth=outputs.expected_depth,
        )

    @staticmethod
    def compute_loss(compute_cost, depths, labels, num_items_in_batch=None) -> torch.Tensor:
        """Sum of real tokens' compute cost / number of supervised tokens (see `forward`)."""
        real = depths >= 0
        total = torch.where(real, compute_cost, torch.zeros_like(compute_cost)).sum()
        if num_items_in_batch is None:
            num_items_in_batch = (labels[..., 1:] != -100).sum()  # the targets the shifted LM loss counts
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch


__all__ = ["AniraPreTrainedModel", "AniraModel", "AniraForCausalLM", "AniraModelOutput", "AniraCausalLMOutput"]
