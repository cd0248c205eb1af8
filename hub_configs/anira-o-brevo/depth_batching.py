"""Depth-wise batched decoding: every sequence advances through the weight-tied core on its own.

`generate()` decodes a batch in lockstep: each step runs every sequence's next token through the core until the
deepest of them halts, so after a short prompt, where a layer's matmuls cost about the same for 1 row as for 8,
a step lasts as long as its deepest token. The core is weight-tied, so rows at different iterations of different
sequences can share one matmul. Here, at every tick:

    core pass       one pass of the core layers over the running rows, each row some sequence's current token at
                    its own iteration t (its keys/values go to, and its query reads, its sequence's slot (t, l))
    halting         the depth controller's plan decides, per row, whether the token runs another iteration
    halted rows     frozen keys/values into the slots of the iterations after its depth (the reuse rule of
                    docs/design.md), coda, norm, head, logits processors, next token (greedy, or sampled with the
                    sequence's own generator), stopping checks; a sequence that goes on enters the next tick at
                    iteration 1 with its new token (embedding and prelude run at the start of that tick)

while the other sequences are still deep in their previous token. Finished sequences leave; `DepthBatcher`
takes new requests into free rows while it runs (continuous batching). Prompts are prefilled with the model's own
forward, ahead of a free row and several at once: the queued prompts of one length (among the next
`prefill_size`) in one forward, no padding, each then loaded into the row it gets.

Controllers are not special-cased: tokens that enter the core in the same tick form a cohort with one plan of
the model's depth controller (`controller.plan(...)`, the same object a forward uses), which a cohort's rows
follow iteration by iteration (`any_active`, `active`, `observe`) exactly as the forward's loop does; a tick runs
the active rows of every cohort in one pass.

The cache (`RowCache`) is padded: for each layer application (prelude layer, core layer at iteration t, coda
layer) one tensor of keys and values [2, iterations, rows, kv_heads, positions, head_dim], every row at its own
length, and a query reads its row's keys up to its own position (a per-row mask). The core's tensors hold all
`max_depth` iterations; a token that halts at depth d writes its frozen keys/values into iterations d+1..max_depth
at once. Memory is therefore rows x positions x max_depth per core layer, the budget, not the depth used
(AniraCache grows with depth).

Guarantees (tests/test_depth_batching.py, float64): greedy decoding gives each sequence the tokens and per-token
depths `generate()` gives it alone, in every depth mode, whatever the other rows do (logits agree to rounding: a
matmul's rows do not depend on each other, but the kernel's blocking may differ with the number of rows).
Sampling draws each sequence's tokens from its own `torch.Generator`, so a sequence's sample depends on its seed
only, never on which sequences share its ticks; it is not the draw `generate()` makes from the global generator.
Beam search, streamers and per-step outputs (scores, logits, attentions, hidden states) stay on the standard loop.
"""

import itertools
from collections import deque
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.generation import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from .cache_anira import AniraCache
from .modeling_anira import apply_rotary

_UNSUPPORTED = {  # generation options that need the standard loop, and their value that does not
    "num_beams": 1, "num_beam_groups": 1, "output_scores": False, "output_attentions": False,
    "output_hidden_states": False, "penalty_alpha": None, "prompt_lookup_num_tokens": None,
}


@dataclass
class DepthBatchResult:
    """One finished request. `depths[i]` is the iterations run at position i of `sequence` (prompt + generated), the
    compute spent on predicting token i + 1; -1 at the final token, which was never processed (as `generate()`)."""

    request_id: int
    prompt: torch.LongTensor  # [prompt length]
    generated: torch.LongTensor  # [new tokens]
    depths: torch.LongTensor  # [prompt length + new tokens]
    stop_reason: str  # "eos", "length" (max_new_tokens) or "criteria" (a stopping criterion)
    logits: torch.Tensor | None = None  # [new tokens, vocab] float32, before the processors (with output_logits=True)

    @property
    def sequence(self) -> torch.LongTensor:
        return torch.cat([self.prompt, self.generated])


@dataclass
class _Request:
    request_id: int
    prompt: torch.LongTensor
    max_new_tokens: int
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # every processed position's depth
    logits: list[torch.Tensor] = field(default_factory=list)


class RowCache:
    """Keys/values of every row: per layer application one tensor [iterations, rows, 2 (keys, values), kv_heads,
    positions, head_dim] (iterations = 1 for prelude and coda layers, `max_depth` for core layers); see the module
    docstring. Keys and values share a tensor so that each write, read and load is one operation, not two, and a
    read gathers whole (iteration, row) entries along the first dimension (a gather along a later one is ~10 x
    slower)."""

    def __init__(self, model, rows: int, max_depth: int, dtype: torch.dtype, device: torch.device, length: int = 64):
        config = model.config
        self.num_prelude, self.num_core, self.num_coda = config.num_prelude_layers, config.num_core_layers, config.num_coda_layers
        self.max_depth = max_depth
        self.shape = (rows, 2, config.num_key_value_heads, length, config.head_dim)
        iterations = [1] * self.num_prelude + [max_depth] * self.num_core + [1] * self.num_coda
        self.states = [torch.zeros(t, *self.shape, dtype=dtype, device=device) for t in iterations]

    def prelude(self, layer: int) -> int:
        return layer

    def core(self, layer: int) -> int:
        return self.num_prelude + layer

    def coda(self, layer: int) -> int:
        return self.num_prelude + self.num_core + layer

    @property
    def length(self) -> int:
        return self.states[0].shape[-2]

    def reserve(self, length: int) -> None:
        """Room for positions 0..length-1 in every row (doubling)."""
        if length <= self.length:
            return
        grown = max(length, 2 * self.length)

        def grow(old):
            new = old.new_zeros(*old.shape[:-2], grown, old.shape[-1])
            new[..., : old.shape[-2], :] = old
            return new

        self.states = [grow(states) for states in self.states]

    def stage(self, cache: AniraCache) -> list[tuple[int, slice, torch.Tensor]]:
        """A prefilled AniraCache as (layer application, iterations, keys/values [batch, 2, kv_heads, length,
        head_dim]) to `load` rows from. Its last iteration slot holds every position's frozen keys/values
        (cache_anira.py), which are those of every later iteration: it serves iterations last..max_depth at once."""
        def stacked(slot):
            return torch.stack((slot.keys, slot.values), dim=1)

        staged = [(self.prelude(layer), slice(0, 1), stacked(cache.layers[cache.prelude_slot(layer)]))
                  for layer in range(self.num_prelude)]
        staged += [(self.coda(layer), slice(0, 1), stacked(cache.layers[cache.coda_slot(layer)]))
                   for layer in range(self.num_coda)]
        last = min(cache.iterations, self.max_depth)
        staged += [(self.core(layer), slice(t - 1, t if t < last else self.max_depth),
                    stacked(cache.layers[cache.core_slot(t, layer)]))
                   for layer in range(self.num_core) for t in range(1, last + 1)]
        return staged

    def load(self, rows: torch.LongTensor, staged: list, entries: torch.LongTensor) -> None:
        """Batch entries `entries` of a staged prefill (`stage`) into `rows`."""
        self.reserve(staged[0][2].shape[-2])
        for index, iterations, states in staged:
            self.states[index][iterations][:, rows, :, :, : states.shape[-2]] = states[entries]

    def write(self, index: int, t: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, key, value) -> None:
        """key/value [n, kv_heads, head_dim] at (iteration t, row, position) for each of the n entries."""
        self.states[index][t, rows, :, :, positions] = torch.stack((key, value), dim=1)

    def read(self, index: int, t: torch.Tensor, rows: torch.Tensor, length: int):
        """[n, kv_heads, length, head_dim] keys/values of each entry's (iteration, row)."""
        entries = t * self.shape[0] + rows  # (iteration, row) in the flattened [iterations x rows] dimension
        states = self.states[index].flatten(0, 1)[..., :length, :].index_select(0, entries)  # a gather, not [t, rows]
        return states[:, 0], states[:, 1]


@dataclass
class _Cohort:
    """Tokens that entered the core in the same tick: one plan of the depth controller, as in a forward. Their
    states, rope and places are kept per cache row (`DepthBatcher.states`, `rope`, `places`)."""

    rows: torch.LongTensor  # [n] cache rows
    mask: tuple[torch.Tensor, int]  # the rows' attention mask and length (`DepthBatcher._mask`)
    plan: object
    running: torch.Tensor | None  # [n] bool: rows that run the next iteration (None: every row)
    live: torch.LongTensor  # the cache rows of those
    t: int = 1  # the next iteration


def _join(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class DepthBatcher:
    """Continuous, depth-wise batched decoding (see the module docstring).

        >>> batcher = DepthBatcher(model, max_batch_size=32, max_new_tokens=16)
        >>> for prompt in prompts:
        ...     batcher.add(prompt)          # 1D token ids, no padding; may also be called while running
        >>> for result in batcher.run():     # results as they finish
        ...     print(result.request_id, result.generated, result.depths)

    Generation options are those of `generate()` (a `GenerationConfig` and/or keyword arguments: `max_new_tokens`,
    `do_sample`, `temperature`, `top_k`, `eos_token_id`, ...; `logits_processor=` and `stopping_criteria=` lists as in
    `generate()`); beam search and per-step outputs are refused. `max_depth` is the depth budget of every token.

    `min_coda_rows`: halted tokens wait until this many have halted (or no token is left in the core) before their
    coda, head and next token run together. 1 runs them every tick; more gives fewer, fuller coda and prelude passes
    at the price of rows idling out of the core. Results do not depend on it (a halted token's coda reads only its
    own sequence's cache); time does (benchmarks/inference/RESULTS.md).

    `prefill_size`: the most prompts one prefill forward takes (default `max_batch_size`): the queued prompts of one
    length among the next `prefill_size` are prefilled together and wait for free rows. More costs less per prompt
    where a forward's fixed cost dominates (short prompts, a narrow model), and holds more prompts' caches at once.
    """

    def __init__(self, model, max_batch_size: int = 8, generation_config: GenerationConfig | None = None,
                 max_depth: int | None = None, logits_processor: LogitsProcessorList | None = None,
                 stopping_criteria: StoppingCriteriaList | None = None, min_coda_rows: int = 1,
                 prefill_size: int | None = None, **kwargs):
        if model.training:
            raise ValueError("DepthBatcher decodes in eval mode: call model.eval() first (a training forward draws "
                             "early-mode depths and applies dropout).")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        if min_coda_rows < 1:
            raise ValueError(f"min_coda_rows must be at least 1, got {min_coda_rows}.")
        if prefill_size is not None and prefill_size < 1:
            raise ValueError(f"prefill_size must be at least 1, got {prefill_size}.")
        self.model, self.base = model, model.model
        config, model_kwargs = model._prepare_generation_config(generation_config, **kwargs)
        unknown = sorted(k for k in model_kwargs if k not in ("attention_mask",))
        if unknown:
            raise ValueError(f"DepthBatcher got arguments it does not know: {unknown}.")
        for name, plain in _UNSUPPORTED.items():
            value = getattr(config, name, None)
            if value is not None and value != plain and not (name == "penalty_alpha" and value == 0):
                raise ValueError(
                    f"depth-batched decoding supports greedy decoding and sampling; {name}={value!r} needs the standard "
                    "loop: call generate() without depth_batching=True."
                )
        if config.num_return_sequences not in (None, 1):
            raise ValueError("depth-batched decoding returns one sequence per request: repeat the prompt instead of "
                             f"num_return_sequences={config.num_return_sequences}.")
        if getattr(config, "stop_strings", None):
            raise ValueError("stop_strings need the tokenizer: use stopping_criteria or the standard loop.")
        self.config = config
        self.max_depth = max_depth or model.config.max_depth
        eos = config.eos_token_id  # as generate(): eos_token_id=None switches stopping at EOS off
        self.eos = set() if eos is None else {int(e) for e in (eos.tolist() if torch.is_tensor(eos) else
                                                              [eos] if isinstance(eos, int) else eos)}
        self.user_processors = logits_processor
        self.stopping_criteria = stopping_criteria or StoppingCriteriaList()
        self._processors: dict[int, LogitsProcessorList] = {}
        self.max_batch_size = max_batch_size
        parameter = next(model.parameters())
        self.cache = RowCache(model, max_batch_size, self.max_depth, parameter.dtype, parameter.device)
        self.device = parameter.device
        # Each row's current token, written when it enters and gathered by the passes that run it: its state and
        # its prelude output, its rotary cos and sin, and its position and next iteration (0-based).
        width, head_dim = model.config.hidden_size, model.config.head_dim
        self.states = torch.zeros(max_batch_size, 2, width, dtype=parameter.dtype, device=self.device)
        self.rope = torch.zeros(max_batch_size, 2, head_dim, dtype=parameter.dtype, device=self.device)
        self.places = torch.zeros(max_batch_size, 2, dtype=torch.long, device=self.device)
        self.sdpa = model.config._attn_implementation == "sdpa"  # read once, not by every layer of every tick
        self.queue: deque[_Request] = deque()
        self.prefilled: deque[tuple] = deque()  # prompts prefilled ahead of a free row: (request, token, staged, entry)
        self.requests: dict[int, _Request] = {}  # cache row -> request
        self.cohorts: list[_Cohort] = []
        self.pending: list[tuple[int, int]] = []  # (cache row, token) entering the next tick
        self.halted: list[tuple[torch.LongTensor, int]] = []  # tokens out of the core awaiting their coda: (rows, depth)
        self.min_coda_rows = min_coda_rows
        self.prefill_size = prefill_size or max_batch_size
        self.ids = itertools.count()
        self.ticks = 0  # core passes
        self.core_rows = 0  # rows over all core passes (core iterations run)
        self.mixed_passes = 0  # core passes whose rows were at different iterations (cohorts are one iteration each)
        self.prelude_passes = self.coda_passes = 0
        self.prefill_passes = 0  # prompt forwards (each over the queued prompts of one length)

    # requests --------------------------------------------------------------------------------------
    def add(self, input_ids, max_new_tokens: int | None = None, generator: torch.Generator | None = None) -> int:
        """Queue a prompt (1D token ids, or [1, seq]; no padding). Returns its request id. `generator` draws its
        samples when sampling (default: one seeded from torch's global generator now)."""
        prompt = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)
        if prompt.dim() == 2 and prompt.shape[0] == 1:
            prompt = prompt[0]
        if prompt.dim() != 1 or prompt.numel() == 0:
            raise ValueError(f"a request is one non-empty sequence of token ids, got shape {tuple(prompt.shape)}.")
        if max_new_tokens is None:
            max_new_tokens = self.config.max_new_tokens
            if max_new_tokens is None:
                max_new_tokens = self.config.max_length - prompt.numel()
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens} (prompt of {prompt.numel()}).")
        if self.config.do_sample and generator is None:
            generator = torch.Generator(device=self.device).manual_seed(int(torch.randint(2**62, ())))
        request = _Request(next(self.ids), prompt, max_new_tokens, generator)
        self.queue.append(request)
        return request.request_id

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.prefilled or self.requests)

    def run(self):
        """Tick until every request (including those added while iterating) has finished; yields each result."""
        while self.busy:
            yield from self.step()

    # one tick --------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[DepthBatchResult]:
        """Admit queued requests into free rows, then one tick: prelude of the entering tokens, one core pass over
        every running row, the halted rows' coda, head and next token. Returns the requests that finished."""
        finished = self._admit()
        if self.pending:
            self._enter()
        if self.cohorts:
            self._core_pass()
        waiting = sum(rows.numel() for rows, _ in self.halted)
        if waiting and (waiting >= self.min_coda_rows or not self.cohorts):
            halted, self.halted = self.halted, []
            depths = [depth for rows, depth in halted for _ in range(rows.numel())]
            finished += self._finish_tokens(_join([rows for rows, _ in halted]), depths)
        return finished

    def _admit(self) -> list[DepthBatchResult]:
        """Prefilled prompts into free rows, their first tokens pending; prefills the next queued prompts when none
        is left prefilled."""
        finished = []
        free = [row for row in range(self.max_batch_size) if row not in self.requests]
        while free and (self.prefilled or self.queue):
            if not self.prefilled:
                finished += self._prefill()
                continue
            taken = [self.prefilled.popleft() for _ in range(min(len(free), len(self.prefilled)))]
            rows, free = free[: len(taken)], free[len(taken) :]
            for _, group in itertools.groupby(zip(rows, taken), key=lambda entry: id(entry[1][2])):
                group = list(group)
                entries = torch.tensor([entry for _, (_, _, _, entry) in group], device=self.device)
                self.cache.load(torch.tensor([row for row, _ in group], device=self.device), group[0][1][2], entries)
                for row, (request, token, _, _) in group:
                    self.requests[row] = request
                    self.pending.append((row, token))
        return finished

    def _prefill(self) -> list[DepthBatchResult]:
        """The queued prompts of the first one's length among the next `prefill_size` (the others keep their
        places): one forward of the model over them, no padding, and their first tokens. Those that go on wait in
        `prefilled` for a free row; those that end at their first token are returned."""
        window = [self.queue.popleft() for _ in range(min(self.prefill_size, len(self.queue)))]
        length = window[0].prompt.numel()
        requests = [request for request in window if request.prompt.numel() == length]
        self.queue.extendleft(reversed([request for request in window if request.prompt.numel() != length]))
        cache = AniraCache(self.model.config, max_depth=self.max_depth)
        prompts = torch.stack([request.prompt for request in requests])
        out = self.model(input_ids=prompts, attention_mask=torch.ones_like(prompts), cache=cache, use_cache=True,
                         max_depth=self.max_depth, logits_to_keep=1)
        self.prefill_passes += 1
        finished = []
        tokens = self._select(out.logits[:, -1], requests)
        staged = None
        for entry, (request, depths, token) in enumerate(zip(requests, cache.depths.tolist(), tokens)):
            request.depths = depths
            result = self._append(request, token)
            if result is None:
                staged = staged or self.cache.stage(cache)
                self.prefilled.append((request, token, staged, entry))
            else:
                finished.append(result)
        return finished

    def _enter(self) -> None:
        """The pending tokens' embedding and prelude, and their cohort (iteration 1 comes next)."""
        rows = torch.tensor([row for row, _ in self.pending], device=self.device)
        tokens = torch.tensor([token for _, token in self.pending], device=self.device)
        positions = torch.tensor([len(self.requests[row].depths) for row, _ in self.pending], device=self.device)
        self.pending = []
        self.prelude_passes += 1
        hidden = self.base.embed_tokens(tokens)
        cos, sin = self.base.rotary_emb(hidden[:, None], positions[:, None])  # kept with the token until its coda
        rope = (cos[:, 0], sin[:, 0])
        mask, length = self._mask(positions, hidden.dtype)
        self.cache.reserve(length)
        zero = torch.zeros_like(rows)
        for index, layer in enumerate(self.base.prelude):
            hidden = self._layer(layer, hidden, rope, self.cache.prelude(index), zero, rows, positions, mask, length)
        self.states.index_copy_(0, rows, hidden[:, None].expand(-1, 2, -1))  # the state, and the prelude output
        self.rope.index_copy_(0, rows, torch.stack(rope, dim=1))
        self.places.index_copy_(0, rows, torch.stack((positions, zero), dim=1))
        n = rows.shape[0]
        plan = self.base.depth_controller.plan(hidden[:, None], torch.ones(n, 1, dtype=torch.bool, device=self.device),
                                               self.max_depth)
        running = self._running(plan, 1, n)  # none halts before it ran an iteration
        live = rows if running is None else rows[running]
        self.cohorts.append(_Cohort(rows, (mask, length), plan, None if live.numel() == n else running, live))

    def _running(self, plan, t: int, n: int) -> torch.Tensor | None:
        """Which of a plan's n rows run iteration t (None: every row, as the plan's `active` says with None)."""
        if not plan.any_active(t):
            return torch.zeros(n, dtype=torch.bool, device=self.device)
        active = plan.active(t)
        return None if active is None else active[:, 0] > 0.5

    def _update_running(self, cohort: _Cohort, running: torch.Tensor | None) -> None:
        """The cohort's rows that run the next iteration; those that ran the last one and do not halted, and join
        `halted` with their depth."""
        if running is None:  # every row runs on: none halted (a token that halted never runs again)
            cohort.running, cohort.live = None, cohort.rows
            return
        if cohort.running is not None and torch.equal(running, cohort.running):  # none halted
            return
        halted = cohort.rows[~running if cohort.running is None else cohort.running & ~running]
        if halted.numel():
            self.halted.append((halted, cohort.t - 1))
        cohort.live = cohort.rows[running]
        cohort.running = None if cohort.live.numel() == cohort.rows.numel() else running

    def _core_pass(self) -> None:
        """One pass of the core over every cohort's running rows; the rows that halted after it join `halted`."""
        cohorts = self.cohorts
        rows = _join([cohort.live for cohort in cohorts])
        states, rope, places = (x.index_select(0, rows) for x in (self.states, self.rope, self.places))
        positions, iteration = places[:, 0], places[:, 1]
        whole = len(cohorts) == 1 and cohorts[0].running is None  # the rows, and so the mask, its cohort entered with
        mask, length = cohorts[0].mask if whole else self._mask(positions, states.dtype)
        hidden = self.base.injection(states[:, 0], states[:, 1])
        for index, layer in enumerate(self.base.core):
            hidden = self._layer(layer, hidden, (rope[:, 0], rope[:, 1]), self.cache.core(index), iteration, rows,
                                 positions, mask, length)
        self.states[:, 0].index_copy_(0, rows, hidden)
        self.places[:, 1].index_add_(0, rows, torch.ones_like(rows))

        self.ticks += 1
        self.core_rows += rows.shape[0]
        self.mixed_passes += len(cohorts) > 1
        start, kept = 0, []
        for cohort in cohorts:
            n = cohort.live.numel()
            if cohort.running is None:  # its rows are these n, in its order
                states = hidden[start : start + n, None]
            else:  # every row of the cohort, the halted ones at their final states (the plan reads the running)
                states = self.states[:, 0].index_select(0, cohort.rows)[:, None]
            cohort.plan.observe(cohort.t, states)
            cohort.t += 1
            self._update_running(cohort, self._running(cohort.plan, cohort.t, cohort.rows.shape[0]))
            if cohort.live.numel():
                kept.append(cohort)
            start += n
        self.cohorts = kept

    def _finish_tokens(self, rows: torch.LongTensor, depths: list[int]) -> list[DepthBatchResult]:
        """Halted tokens: frozen keys/values, coda, head, next token, stopping checks."""
        self.coda_passes += 1
        states, rope, places = (x.index_select(0, rows) for x in (self.states, self.rope, self.places))
        hidden, rope, positions = states[:, 0], (rope[:, 0], rope[:, 1]), places[:, 0]
        mask, length = self._mask(positions, hidden.dtype)
        self._write_frozen(hidden, rope, rows, positions, depths)
        zero = torch.zeros_like(rows)
        for index, layer in enumerate(self.base.coda):
            hidden = self._layer(layer, hidden, rope, self.cache.coda(index), zero, rows, positions, mask, length)
        logits = self.model.lm_head(self.base.norm(hidden))
        requests = [self.requests[row] for row in rows.tolist()]
        for request, depth in zip(requests, depths):
            request.depths.append(depth)
        finished = []
        for row, request, token in zip(rows.tolist(), requests, self._select(logits, requests)):
            result = self._append(request, token)
            if result is None:
                self.pending.append((row, token))
            else:
                del self.requests[row]
                finished.append(result)
        return finished

    def _write_frozen(self, hidden, rope, rows, positions, depths: list[int]) -> None:
        """A token halted at depth d: its keys/values at core layer l in iterations d+1..max_depth are those of its
        frozen state (the reuse rule), computed once per layer and written into every such slot."""
        slot = [t for depth in depths for t in range(depth, self.max_depth)]  # 0-based slots d..max_depth-1
        if not slot:
            return
        entry = torch.tensor([i for i, depth in enumerate(depths) for _ in range(depth, self.max_depth)],
                             device=self.device)
        slot = torch.tensor(slot, device=self.device)
        rows, positions = rows[entry], positions[entry]
        for index, layer in enumerate(self.base.core):
            _, key, value = self._project(layer, hidden, rope, query=False)
            self.cache.write(self.cache.core(index), slot, rows, positions, key[entry], value[entry])

    # parts -----------------------------------------------------------------------------------------
    def _mask(self, positions: torch.Tensor, dtype: torch.dtype):
        """The mask [n, 1, 1, length] with which each row reads its keys up to its own position, and length."""
        length = int(positions.max()) + 1
        allowed = (torch.arange(length, device=self.device) <= positions[:, None])[:, None, None, :]
        if self.sdpa:
            return allowed, length
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min), length

    def _layer(self, layer, hidden, rope, index, iteration, rows, positions, mask, length) -> torch.Tensor:
        """A decoder layer over n rows [n, H], each one token of its own sequence: `AniraDecoderLayer.forward` with
        its keys/values written into, and its attention reading, that row's cache at (iteration, position)."""
        attention = layer.self_attn
        query, key, value = self._project(layer, hidden, rope)
        self.cache.write(index, iteration, rows, positions, key, value)
        keys, values = self.cache.read(index, iteration, rows, length)
        if self.sdpa and attention.num_key_value_groups == 1:
            # what mix_heads runs for one query per row, without its per-call dispatch
            out = F.scaled_dot_product_attention(query[:, :, None], keys, values, attn_mask=mask, scale=attention.scaling)
            out = out.view(rows.shape[0], -1)
        else:
            out = attention.mix_heads(query[:, :, None], keys, values, mask)[0][:, 0]
        return layer.after_attention(hidden, F.linear(out, attention.o_proj.weight, attention.o_proj.bias))

    @staticmethod
    def _project(layer, hidden, rope, query: bool = True):
        """Rotated queries [n, heads, head_dim] (None without `query`) and keys, and values [n, kv_heads, head_dim]
        of n rows [n, H]: the attention's `project_query` and `project_key_value` on token rows, its linear layers
        called as functions and queries and keys rotated together: the same values with fewer calls, which at width
        64 cost about as much as the matmuls themselves."""
        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)
        shape = (hidden.shape[0], -1, attention.head_dim)
        key = F.linear(normed, attention.k_proj.weight, attention.k_proj.bias).view(shape)
        value = F.linear(normed, attention.v_proj.weight, attention.v_proj.bias).view(shape)
        if not query:
            return None, apply_rotary(key, *rope), value
        query = F.linear(normed, attention.q_proj.weight, attention.q_proj.bias).view(shape)
        heads = query.shape[1]
        rotated = apply_rotary(torch.cat((query, key), dim=1), *rope)
        return rotated[:, :heads], rotated[:, heads:], value

    def _select(self, logits: torch.Tensor, requests: list[_Request]) -> list[int]:
        """Next tokens as `generate()` picks them: float32 logits, the logits processors over the sequence so far,
        argmax or a draw from each request's own generator. Processors act on each row alone, so the rows that
        share a processor list and a sequence length go through it in one call."""
        scores = logits.to(dtype=torch.float32, copy=True)
        if self.config.output_logits:
            for request, row in zip(requests, scores):
                request.logits.append(row.clone())
        groups = {}  # (processor list, sequence length) -> (processor list, rows)
        for row, request in enumerate(requests):
            processors = self._processors_for(request)
            if processors:
                key = (id(processors), request.prompt.numel() + len(request.tokens))
                groups.setdefault(key, (processors, []))[1].append(row)
        for processors, rows in groups.values():
            if len(rows) == 1:  # a view, no gather (most groups while the sequences' lengths differ)
                ids, index = self._sequence(requests[rows[0]])[None], slice(rows[0], rows[0] + 1)
            else:
                ids = torch.stack([self._sequence(requests[row]) for row in rows])
                index = torch.tensor(rows, device=scores.device)
            processed = scores[index]
            for processor in processors:  # as LogitsProcessorList does without keyword arguments, minus its
                processed = processor(ids, processed)  # signature inspection of every processor at every call
            scores[index] = processed
        if not self.config.do_sample:
            return scores.argmax(-1).tolist()
        probs = torch.softmax(scores, dim=-1)
        return [int(torch.multinomial(p, 1, generator=r.generator)) for p, r in zip(probs, requests)]

    @staticmethod
    def _sequence(request: _Request) -> torch.LongTensor:
        """The request's prompt and tokens so far [length]."""
        return torch.cat([request.prompt, request.prompt.new_tensor(request.tokens)])

    def _processors_for(self, request: _Request) -> LogitsProcessorList:
        """generate()'s processors for this prompt length (some, e.g. min_new_tokens, count from the prompt)."""
        length = request.prompt.numel()
        if length not in self._processors:
            self._processors[length] = self.model._get_logits_processor(
                generation_config=self.config, input_ids_seq_length=length, encoder_input_ids=request.prompt[None],
                logits_processor=self.user_processors, device=self.device, model_kwargs={})
        return self._processors[length]

    def _append(self, request: _Request, token: int) -> DepthBatchResult | None:
        """Record a chosen token; the request's result if that token ends it."""
        request.tokens.append(token)
        reason = None
        if token in self.eos:
            reason = "eos"
        elif len(request.tokens) >= request.max_new_tokens:
            reason = "length"
        elif self.stopping_criteria:
            if bool(self.stopping_criteria(self._sequence(request)[None], None).any()):
                reason = "criteria"
        if reason is None:
            return None
        depths = torch.tensor(request.depths + [-1], dtype=torch.long)  # the final token is never processed
        logits = torch.stack(request.logits).cpu() if request.logits else None
        return DepthBatchResult(request.request_id, request.prompt.cpu(), torch.tensor(request.tokens), depths, reason,
                                logits)


def depth_batched_generate(model, inputs: torch.Tensor | None, generation_config=None, streamer=None,
                           max_batch_size: int | None = None, **kwargs):
    """`generate(..., depth_batching=True)`: the rows of a left-padded batch as DepthBatcher requests, assembled
    back into `generate()`'s output (sequences right-filled with the pad token after each one's end; depths -1 at
    padding and from each sequence's final token on)."""
    from .generation_anira import AniraGenerateOutput

    if kwargs.get("output_logits") or getattr(generation_config, "output_logits", False):
        raise ValueError("depth_batching=True returns no per-step output_logits (sequences finish out of step); "
                         "DepthBatcher(output_logits=True) keeps each request's logits.")
    if streamer is not None:
        raise ValueError("depth_batching=True does not stream (sequences finish out of step): drop the streamer or "
                         "depth_batching.")
    input_ids = inputs if inputs is not None else kwargs.pop("input_ids", None)
    if input_ids is None or input_ids.dim() != 2:
        raise ValueError("depth_batching=True needs input_ids [batch, seq] (no inputs_embeds).")
    mask = kwargs.pop("attention_mask", None)
    return_dict = kwargs.pop("return_dict_in_generate", None)
    for name in ("use_cache", "cache", "past_key_values"):
        if kwargs.pop(name, None) not in (None, True):
            raise ValueError(f"depth_batching=True keeps its own cache: {name} cannot be passed.")
    batcher = DepthBatcher(model, max_batch_size or input_ids.shape[0], generation_config, **kwargs)
    config = batcher.config
    pad = config.pad_token_id if config.pad_token_id is not None else model.config.pad_token_id
    if pad is None:
        pad = min(batcher.eos) if batcher.eos else 0
    if mask is None:
        mask = input_ids != pad if pad not in batcher.eos else torch.ones_like(input_ids)
    mask = mask.to(input_ids.device).bool()
    if bool((mask[:, :-1] & ~mask[:, 1:]).any()):
        raise ValueError("depth_batching=True takes left-padded prompts (padding before the tokens); this "
                         "attention_mask has padding after a token.")
    max_new = config.max_new_tokens if config.max_new_tokens is not None else config.max_length - input_ids.shape[1]
    order = {batcher.add(row[keep], max_new_tokens=max_new): b for b, (row, keep) in enumerate(zip(input_ids, mask))}
    results = {order[r.request_id]: r for r in batcher.run()}
    generated = max(len(r.generated) for r in results.values())
    prompt_length = input_ids.shape[1]
    sequences = torch.full((len(results), prompt_length + generated), pad, dtype=torch.long, device=input_ids.device)
    depths = torch.full(sequences.shape, -1, dtype=torch.long)
    sequences[:, :prompt_length] = input_ids
    for b, result in results.items():
        start = prompt_length - result.prompt.numel()
        sequences[b, prompt_length : prompt_length + len(result.generated)] = result.generated
        depths[b, start : start + result.depths.numel()] = result.depths
    if not (return_dict if return_dict is not None else config.return_dict_in_generate):
        return sequences
    depths = model._end_at_final_token(depths.to(input_ids.device), sequences, prompt_length, model._eos_ids(config, kwargs))
    return AniraGenerateOutput(sequences=sequences, depths=depths)


__all__ = ["DepthBatcher", "DepthBatchResult", "RowCache", "depth_batched_generate"]
