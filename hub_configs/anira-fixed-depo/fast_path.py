"""The fast recurrence: every iteration computes only the tokens that are still active.

`fast_recur` is a second implementation of `AniraModel.recur` (same arguments, same result) used at
inference. The dense reference runs every token through every layer application and masks the frozen
ones back; here, at iteration t:

    active tokens (N of the B x S)    gathered into N rows: injection, q/k/v/o projections and the MLP
                                      run on those rows only, and the result is scattered back
    frozen tokens                     no compute: their keys/values at core layer l are those of their
                                      frozen state (docs/design.md's reuse rule), computed once, when they freeze
                                      (in the same k/v projection as the next iteration's active tokens)
    attention                         the active queries are packed into [R, A, ...] (A = most active
                                      tokens in a row) and attend to the keys/values of every position of
                                      their row's slot: cached past + the whole current chunk; after a
                                      cached past, rows with no active token read nothing (ActivePacking)

and the loop stops when no token is active. Every cache slot (t, l) still receives exactly one
`cache.update` per call with the whole chunk's keys/values (fresh for active tokens, reused for frozen
ones), so all slots keep the same length and the cache equals the dense path's at every real position.

The packed queries reuse the dense path's 4D mask: packed query j of row b is chunk position p, so its
mask row is the dense mask's row p (causality and padding come out exactly as in the reference). Rows of
the packing that hold no query take the chunk's last position, which is never padding under left padding,
so no row is fully masked.

When every token of an iteration is active (fixed mode, min_depth, batch size 1 in decoding) the
iteration is the dense one: gathering would only cost time. Attention weights are not returned here:
`output_attentions=True` runs the dense path.

What it saves: the rows of every matmul of an iteration are the active tokens only, a batch row with no
active token reads none of its cached keys/values, and whole iterations are skipped once no token of the
batch is active. So time follows the mean depth where an iteration's cost grows with its active tokens (long
prompts; decoding after a long context, where each sequence's attention over its cache dominates) and the
deepest token of the batch where it does not (decoding a few sequences after a short context: a matmul of
1-8 rows costs about what reading its weights costs); benchmarks/inference/RESULTS.md measures both regimes.
"""

import bisect

import torch

_DENSE_LAYER_ARGS = ("attention_mask", "position_embeddings", "cache", "attention_sink")
QUERY_BLOCK = 256  # packed queries per attention call in a long chunk (see ActivePacking.attend)
OVERFLOW_SAVING = 0.75  # split off the fullest rows' extra queries when that leaves at most this share of the slots


class FrozenKeyValues:
    """Keys/values [B * S, kv_heads, head_dim] per core layer of the chunk's frozen tokens (the reuse rule)."""

    def __init__(self, model, tokens: int):
        self.core, self.tokens = model.core, tokens
        self.keys: list[torch.Tensor | None] = [None] * len(model.core)
        self.values: list[torch.Tensor | None] = [None] * len(model.core)

    def store(self, layer: int, index: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        """Keep the keys/values [n, kv_heads, head_dim] of the tokens `index` (flat) at `layer`."""
        if self.keys[layer] is None:  # fresh zeros: written in place (no copy of the zeros)
            self.keys[layer] = key.new_zeros(self.tokens, *key.shape[1:]).index_copy_(0, index, key)
            self.values[layer] = value.new_zeros(self.tokens, *value.shape[1:]).index_copy_(0, index, value)
            return
        # Out of place: in training, earlier iterations' attention read the previous tensors through autograd.
        self.keys[layer] = self.keys[layer].index_copy(0, index, key)
        self.values[layer] = self.values[layer].index_copy(0, index, value)

    def freeze(self, hidden_flat: torch.Tensor, index: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Tokens `index` stop at their state in `hidden_flat`: compute their keys/values at every layer."""
        if index.numel() == 0:
            return
        states = hidden_flat.index_select(0, index)  # [n, H]: token rows
        rope = (cos.index_select(0, index), sin.index_select(0, index))
        for position, layer in enumerate(self.core):
            key, value = layer.key_value(states, rope)  # [n, kv_heads, head_dim]
            self.store(position, index, key, value)

    def update(self, layer: int, batch: int, index: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        """The chunk's keys/values [B, kv_heads, S, head_dim] at `layer` with the tokens `index` (flat) set to
        `key`/`value` [n, kv_heads, head_dim]: the computed tokens' fresh ones and the freezing tokens' frozen
        ones, in one copy that is also kept. Keeping the computed tokens' fresh keys/values is harmless: a row
        is read later only as a frozen token's (stored when it freezes) or after being overwritten."""
        self.store(layer, index, key, value)
        return self.chunk(layer, batch)

    def chunk(self, layer: int, batch: int):
        """The chunk's keys/values [B, kv_heads, S, head_dim] at `layer`."""
        keys, values = self.keys[layer], self.values[layer]
        return keys.view(batch, -1, *keys.shape[1:]).transpose(1, 2), values.view(batch, -1, *values.shape[1:]).transpose(1, 2)


class ActivePacking:
    """Where the N active tokens of an iteration go: flat rows for the projections and the MLP, packed
    [R, A] slots for attention (A = most active tokens in a row), and the packed queries' mask rows.

    Which R rows: in decoding after a context (`whole_chunk` False), the batch rows that hold an active token,
    so a row whose token halted takes no part in attention at all and its cached keys/values are not read (in
    long-context decoding that read is most of an iteration); non-consecutive rows then take one kernel call
    per run of consecutive rows. When the keys are the chunk's own (training, a prompt's prefill:
    `whole_chunk`), every row from the first to the last that holds an active token, in one call: a row without
    active tokens adds only A dummy queries over a short chunk, while each extra call costs more than that
    at training sizes (measured in benchmarks/model/RESULTS.md).

    Overflow: every packed row is as wide as the fullest one, so when a few rows hold many active tokens and the
    rest few (a training batch late in the recurrence: 17-20 % of the slots held a token), most slots are dummy
    queries. In the one-call case the rows are then cut at `cap` queries (each row's first `cap` active tokens,
    over the same view of the keys), and the queries past `cap` of the rows that have them attend in a second call
    to those rows' keys/values alone (a small copy). Attention is per query, so the split is exact. `cap`
    minimises the slots of both calls, and is used only when that leaves at most OVERFLOW_SAVING of the
    unsplit slots, since the second call has a cost of its own."""

    def __init__(self, active: torch.Tensor, mask: torch.Tensor | None, whole_chunk: bool = False):
        batch, seq = active.shape
        device = active.device
        self.seq = seq
        self.index = active.reshape(-1).nonzero().squeeze(-1)  # flat (b * S + p) of the active tokens, ascending
        # The per-row bookkeeping is a handful of integers per batch row: read the counts once and do it in Python.
        counts = active.sum(-1).tolist()
        rows = [b for b, count in enumerate(counts) if count]  # batch rows taking part, ascending
        if whole_chunk and rows:
            rows = list(range(rows[0], rows[-1] + 1))
        self.width = max(counts)  # A
        self.cap = self.width
        if whole_chunk and 0 < self.width <= QUERY_BLOCK:
            self.cap = _overflow_cap(sorted(counts[b] for b in rows), self.width)
        overflow = [b for b in rows if counts[b] > self.cap]  # rows with queries past the cap (batch index)
        self.rows = torch.tensor(rows, dtype=torch.long, device=device)
        self.overflow_rows = torch.tensor(overflow, dtype=torch.long, device=device)
        self.main_slots = len(rows) * self.cap
        self.slots = self.main_slots + len(overflow) * (self.width - self.cap)
        # The k-th active token (k in 0..N-1), at rank j = k - (active tokens of the rows before its row b) in its
        # row, goes to slot r * cap + j (r: b's place among the R rows) when j < cap, else after the main slots to
        # (b's place among the overflow rows) * (width - cap) + j - cap: k plus a per-row offset either way.
        before = [0] * batch  # active tokens of the rows before b
        for b in range(1, batch):
            before[b] = before[b - 1] + counts[b - 1]
        table = [[0, 0, 0] for _ in range(batch)]  # per batch row: main offset, overflow offset, first overflow k
        for r, b in enumerate(rows):
            table[b][0] = r * self.cap - before[b]
            table[b][2] = before[b] + self.cap
        for o, b in enumerate(overflow):
            table[b][1] = self.main_slots + o * (self.width - self.cap) - self.cap - before[b]
        row = torch.div(self.index, seq, rounding_mode="floor")
        per_token = torch.tensor(table, dtype=torch.long, device=device).index_select(0, row)
        k = torch.arange(self.index.numel(), device=device)
        offset = per_token[:, 0] if not overflow else torch.where(k >= per_token[:, 2], per_token[:, 1], per_token[:, 0])
        self.slot = k + offset
        positions = torch.full((self.slots,), seq - 1, dtype=torch.long, device=device)
        positions.index_copy_(0, self.slot, self.index - row * seq)
        self.positions = positions[:self.main_slots].view(-1, self.cap)
        self.runs = _contiguous_runs(rows)
        self.mask = self._mask_rows(mask, batch, seq, self.rows, self.positions)
        if overflow:
            overflow_positions = positions[self.main_slots:].view(-1, self.width - self.cap)
            self.overflow_mask = self._mask_rows(mask, batch, seq, self.overflow_rows, overflow_positions)

    @staticmethod
    def _mask_rows(mask: torch.Tensor | None, batch: int, seq: int, rows: torch.Tensor, positions: torch.Tensor):
        """The dense mask's rows for packed queries at `positions` [len(rows), width] of the batch rows `rows`."""
        if mask is None:
            # The dense path needed no mask: no padding, and either one query (it sees every key) or the
            # causal default, which the packed queries must get explicitly.
            if seq == 1:
                return None
            raise ValueError("the fast path needs the 4D causal mask for a multi-token chunk")
        if mask.dim() != 4:
            raise ValueError(f"the fast path expects a 4D attention mask, got shape {tuple(mask.shape)}")
        if mask.shape[1] == 1:  # one mask for every head: its [query, key] rows picked by one flat index
            if mask.shape[0] == 1 or mask.stride(0) == 0:  # the same for every batch row
                picked = mask[0, 0].index_select(0, positions.reshape(-1))
            else:
                flat = (positions + (rows * mask.shape[2]).unsqueeze(-1)).reshape(-1)
                picked = mask[:, 0].reshape(-1, mask.shape[-1]).index_select(0, flat)
            return picked.view(len(positions), 1, positions.shape[-1], mask.shape[-1])
        mask = mask.expand(batch, -1, -1, -1)[rows]
        index = positions.view(len(mask), 1, -1, 1).expand(-1, mask.shape[1], -1, mask.shape[-1])
        return mask.gather(2, index)

    def attend(self, attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs) -> torch.Tensor:
        """Attention of the active tokens' queries [N, heads, head_dim] to their own batch rows' keys/values
        [B, kv_heads, L, head_dim]; returns the active tokens' outputs [N, heads * head_dim], before o_proj.

        The queries are packed into [R, heads, cap, head_dim]: one backend call per run of consecutive batch rows
        (slices are views: the cache is not copied), and within a run per block of QUERY_BLOCK packed queries,
        which attend only to the keys up to the block's latest position: an explicit mask makes the kernel
        compute every query-key pair, so without the blocks a long prompt's attention would cost the full
        square instead of the causal triangle. The overflow queries, if any, take one more call."""
        heads, head_dim = query.shape[1:]
        packed = query.new_zeros(self.slots, heads, head_dim).index_copy_(0, self.slot, query)
        main = packed[:self.main_slots].view(-1, self.cap, heads, head_dim).transpose(1, 2)
        blocks = self._query_blocks(key.shape[-2])
        outputs, start = [], 0
        for first, last in self.runs:
            stop = start + last - first
            row_outputs = []
            for q0, q1, keys in blocks:
                mask = None if self.mask is None else _part(self.mask, start, stop, q0, q1, keys)
                out, _ = attention.mix_heads(_part(main, start, stop, q0, q1), _part(key, first, last, 0, keys),
                                             _part(value, first, last, 0, keys), mask, **kwargs)
                row_outputs.append(out)
            outputs.append(row_outputs[0] if len(row_outputs) == 1 else torch.cat(row_outputs, dim=1))
            start = stop
        if self.overflow_rows.numel():
            extra = packed[self.main_slots:].view(-1, self.width - self.cap, heads, head_dim).transpose(1, 2)
            out, _ = attention.mix_heads(extra, key.index_select(0, self.overflow_rows),
                                         value.index_select(0, self.overflow_rows), self.overflow_mask, **kwargs)
            outputs.append(out)
        out = [o.reshape(-1, o.shape[-1]) for o in outputs]
        return (out[0] if len(out) == 1 else torch.cat(out)).index_select(0, self.slot)

    def _query_blocks(self, keys: int) -> list[tuple[int, int, int]]:
        """(first, last, keys needed) per block of packed queries. Packed positions ascend along a row, so a
        block's queries see no key beyond its latest position (the mask hides them; dropping them is exact)."""
        if self.mask is None or self.cap <= QUERY_BLOCK:
            return [(0, self.cap, keys)]
        past = keys - self.seq
        starts = list(range(0, self.cap, QUERY_BLOCK))
        latest = torch.stack([self.positions[:, q0 : q0 + QUERY_BLOCK].amax() for q0 in starts]).tolist()
        return [(q0, min(q0 + QUERY_BLOCK, self.cap), past + p + 1) for q0, p in zip(starts, latest)]


def _part(x: torch.Tensor, first: int, last: int, start: int, stop: int, keys: int | None = None) -> torch.Tensor:
    """x[first:last, :, start:stop] (and [..., :keys] when given), or x itself when that is all of x: a whole-range
    slice is an alias, one more autograd node for nothing (the usual case of a training batch's one call)."""
    whole = first == 0 and last == x.shape[0] and start == 0 and stop == x.shape[2]
    if keys is None:
        return x if whole else x[first:last, :, start:stop]
    return x if whole and keys == x.shape[3] else x[first:last, :, start:stop, :keys]


def _overflow_cap(counts: list[int], width: int) -> int:
    """The row width that minimises the slots of the main and the overflow call, R * cap + (rows with more than
    cap) * (width - cap), given the rows' active counts in ascending order; `width` (no split) unless that leaves at
    most OVERFLOW_SAVING of the R * width slots."""
    rows, best, fewest = len(counts), width, OVERFLOW_SAVING * len(counts) * width
    for cap in sorted(set(counts) - {0, width}):  # a row of 0 queries is no cut
        slots = rows * cap + (rows - bisect.bisect_right(counts, cap)) * (width - cap)
        if slots <= fewest:
            best, fewest = cap, slots
    return best


def _contiguous_runs(rows: list[int]) -> list[tuple[int, int]]:
    """[first, last) ranges of consecutive integers: [0, 1, 2, 5, 6] -> [(0, 3), (5, 7)]."""
    runs = []
    for row in rows:
        if runs and runs[-1][1] == row:
            runs[-1] = (runs[-1][0], row + 1)
        else:
            runs.append((row, row + 1))
    return runs


def _full_mask(layer_kwargs: dict, batch: int, seq: int, past: int, device, dtype, config) -> torch.Tensor | None:
    """The dense causal mask when create_causal_mask left it to the kernel (SDPA without padding)."""
    mask = layer_kwargs["attention_mask"]
    if mask is not None or seq == 1:
        return mask
    keys = torch.arange(past + seq, device=device)
    allowed = (keys[None, :] <= past + torch.arange(seq, device=device)[:, None]).view(1, 1, seq, past + seq)
    if config._attn_implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


class SelectedPositions:
    """Positions [B, S] (bool) of a chunk with no cached past, packed once for `layer_at` (their attention slots,
    mask rows and rotary rows): the iteration loss reads its readouts at the same positions after every iteration."""

    def __init__(self, selected: torch.Tensor, layer_kwargs: dict, config):
        batch, seq = selected.shape
        cos, sin = layer_kwargs["position_embeddings"]
        mask = _full_mask(layer_kwargs, batch, seq, 0, selected.device, cos.dtype, config)
        self.packing = ActivePacking(selected, mask, whole_chunk=True)
        index = self.packing.index
        self.rope = tuple(x.expand(batch, -1, -1).reshape(batch * seq, -1).index_select(0, index) for x in (cos, sin))


def layer_at(layer, hidden: torch.Tensor, selected, layer_kwargs: dict, config) -> torch.Tensor:
    """A decoder layer's output [N, H] at the `selected` positions [B, S] only (row-major order; a bool tensor or
    its `SelectedPositions`), for a chunk with no cached past: keys/values from every position, queries, attention,
    o_proj and the MLP for the N selected ones. Exact, as attention is per query: the iteration loss reads its
    readouts at the supervised positions."""
    width = hidden.shape[-1]
    if not isinstance(selected, SelectedPositions):
        selected = SelectedPositions(selected, layer_kwargs, config)
    packing, index = selected.packing, selected.packing.index
    # keys/values [B, kv_heads, S, head_dim], queries [N, heads, head_dim]
    query, key, value = layer.project_selected(hidden, index, layer_kwargs["position_embeddings"], selected.rope)
    attend_kwargs = {k: v for k, v in layer_kwargs.items() if k not in _DENSE_LAYER_ARGS}
    out = packing.attend(layer.self_attn, query, key, value, **attend_kwargs)  # [N, heads * head_dim]
    return layer.finish_rows(hidden.reshape(-1, width).index_select(0, index), out)


def layer_at_rows(layer, hidden: torch.Tensor, index: torch.Tensor, layer_kwargs: dict, config,
                  active: torch.Tensor | None = None) -> torch.Tensor:
    """`layer_at` for a traced forward, at the flat positions `index` [N] (row-major), with no data-dependent packing:
    keys/values at every position, and each selected query's attention over its own row's keys, values and mask row
    written out in elementwise operations and sums (which the compiler fuses with the gathers; an attention kernel
    call over N batches of one query costs more, backward). Equal to `layer_at` within rounding."""
    batch, seq, width = hidden.shape
    attention = layer.self_attn
    cos, sin = layer_kwargs["position_embeddings"]
    rope = tuple(x.expand(batch, -1, -1).reshape(batch * seq, -1).index_select(0, index) for x in (cos, sin))
    query, key, value = layer.project_selected(hidden, index, layer_kwargs["position_embeddings"], rope)
    row = torch.div(index, seq, rounding_mode="floor")
    key, value = (x.repeat_interleave(attention.num_key_value_groups, dim=1).index_select(0, row) for x in (key, value))
    scores = (query.unsqueeze(2) * key).sum(-1) * attention.scaling  # [N, heads, S]
    mask = _full_mask(layer_kwargs, batch, seq, 0, hidden.device, cos.dtype, config)
    mask = mask.expand(batch, 1, seq, seq).reshape(batch * seq, 1, seq).index_select(0, index)  # [N, 1, S]
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + mask
    probs = scores.softmax(-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=attention.attention_dropout if attention.training else 0.0)
    out = (probs.unsqueeze(-1) * value).sum(2)  # [N, heads, head_dim]
    return layer.finish_rows(hidden.reshape(-1, width).index_select(0, index), out.flatten(1), active)


def fast_recur(model, hidden, prelude_states, plan, max_depth: int, cache, layer_kwargs: dict, all_hidden) -> torch.Tensor:
    """`AniraModel.recur` computing only the tokens `plan.computed(t)` names; equal to it, values and gradients
    (tests/test_fast_path.py, tests/test_fast_training.py)."""
    batch, seq, width = hidden.shape
    cos, sin = layer_kwargs["position_embeddings"]
    cos, sin = cos.expand(batch, -1, -1).reshape(batch * seq, -1), sin.expand(batch, -1, -1).reshape(batch * seq, -1)
    attend_kwargs = {k: v for k, v in layer_kwargs.items() if k not in _DENSE_LAYER_ARGS}
    past = cache.get_seq_length(cache.core_slot(1, 0)) if cache is not None else 0  # the prelude slots already hold the chunk
    dense_mask = None  # built on the first gathered iteration
    frozen = FrozenKeyValues(model, batch * seq)
    hidden_flat, prelude_flat = hidden.reshape(-1, width), prelude_states.reshape(-1, width)
    running = torch.ones(batch * seq, dtype=torch.bool, device=hidden.device)  # computed at the previous iteration
    all_running = True  # the last iteration (or the prelude, before any) computed every token

    traced = torch.compiler.is_compiling() and cache is None  # a compiled training forward (compile_model)
    ran = 0
    for t in range(1, max_depth + 1):
        if not plan.any_active(t):
            break
        active = plan.active(t)
        computed = plan.computed(t)
        if traced and computed is not None:
            hidden_flat = _traced_iteration(model, computed, active, hidden_flat, prelude_flat, layer_kwargs)
        elif computed is None or bool(computed.all()):  # every token computed: the dense iteration
            mask = None if active is None or (not active.requires_grad and bool((active > 0.5).all())) else active
            hidden = model.dense_iteration(t, hidden_flat.view(batch, seq, width), prelude_states, mask, cache, layer_kwargs)
            hidden_flat = hidden.reshape(-1, width)
            running, all_running = torch.ones_like(running), True
        else:
            flat_computed = computed.reshape(-1)
            freezing = (running & ~flat_computed).nonzero().squeeze(-1)  # computed at t - 1, frozen from t on
            running, all_running = flat_computed, False
            if dense_mask is None:
                dense_mask = _full_mask(layer_kwargs, batch, seq, past, hidden.device, hidden.dtype, model.config)
            hidden_flat = _sparse_iteration(model, t, computed, active, freezing, hidden_flat, prelude_flat, frozen,
                                            cache, dense_mask, past == 0, cos, sin, attend_kwargs)
        hidden = hidden_flat.view(batch, seq, width)
        plan.observe(t, hidden)
        ran = t
        if all_hidden is not None:
            all_hidden.append(hidden)

    if cache is not None and all_running:
        # Every token ran the last iteration (fixed mode): one dense projection, with no data-dependent
        # gathering, so that a fixed model compiles with its cache.
        model.write_frozen_slots(hidden_flat.view(batch, seq, width), ran + 1, cache, layer_kwargs["position_embeddings"])
    elif cache is not None:
        # Every token is frozen now: the remaining slots, and the one past the last iteration run (the frozen
        # keys/values a later, deeper chunk starts its new slots from), get each token's frozen keys/values.
        frozen.freeze(hidden_flat, running.nonzero().squeeze(-1), cos, sin)
        for index in range(len(model.core)):
            key, value = frozen.chunk(index, batch)
            for t in range(ran + 1, max(cache.iterations, ran + 1) + 1):
                cache.update(key, value, cache.core_slot(t, index))
    return hidden_flat.view(batch, seq, width)


def _sparse_iteration(model, t, computed, active, freezing, hidden_flat, prelude_flat, frozen, cache, dense_mask,
                      whole_chunk, cos, sin, attend_kwargs):
    """One iteration over the computed tokens only; returns the new flat states. The tokens `freezing` (flat)
    stopped being computed after the previous iteration: their frozen keys/values are computed here, in the
    same projection as the computed tokens' (one pass over the k/v weights per layer, not two).

    At inference the computed tokens are the active ones and each layer is `h <- layer(h)`. In training some
    computed tokens have a zero mask that carries a gradient, and every mask may (ANIRA-O's a^t = 1 depends on
    earlier halting decisions), so the rows apply the dense path's `h <- a * layer(h) + (1 - a) * h`: the same
    expression on the same values, hence the same gradients."""
    batch = computed.shape[0]
    if not bool(computed.any()):  # nothing runs, but every slot still gets the chunk's (frozen) keys/values
        frozen.freeze(hidden_flat, freezing, cos, sin)
        for position in range(len(model.core)):
            if cache is not None:
                cache.update(*frozen.chunk(position, batch), cache.core_slot(t, position))
        return hidden_flat
    packing = ActivePacking(computed, dense_mask, whole_chunk)
    index = packing.index
    n = index.numel()
    a = None
    if active is not None:
        a = active.reshape(-1).index_select(0, index)
        a = a.to(hidden_flat.dtype).view(n, 1) if a.requires_grad or not bool((a > 0.5).all()) else None
    # The tokens are rows [N, H] throughout (projections to [N, heads, head_dim], no batch axis to add and drop),
    # and gathers go through index_select: the same rows as indexing, several times faster on CPU, and its
    # backward (index_add into zeros) gives the same gradient.
    rows = torch.cat([index, freezing])  # computed tokens first, then the freezing ones
    rope = (cos.index_select(0, rows), sin.index_select(0, rows))
    frozen_states = hidden_flat.index_select(0, freezing)  # a freezing token's input to every core layer
    states = model.injection(hidden_flat.index_select(0, index), prelude_flat.index_select(0, index))  # [N, H]
    if a is not None:
        states = a * states + (1 - a) * hidden_flat.index_select(0, index)
    for position, layer in enumerate(model.core):
        # queries [N, heads, head_dim], keys/values [N + frozen, kv_heads, head_dim]
        query, key, value = layer.project_rows(states, frozen_states, rope)
        key, value = frozen.update(position, batch, rows, key, value)
        if cache is not None:
            key, value = cache.update(key, value, cache.core_slot(t, position))
        out = packing.attend(layer.self_attn, query, key, value, **attend_kwargs)  # [N, heads * head_dim]
        states = layer.finish_rows(states, out, a)
    return hidden_flat.index_copy(0, index, states)


def _traced_iteration(model, computed, active, hidden_flat, prelude_flat, layer_kwargs: dict) -> torch.Tensor:
    """`_sparse_iteration` for a traced training forward (ANIRA-O under compile_model): the computed tokens' count is a
    graph symbol (possibly 0), and nothing is packed. Each core layer reads its keys/values from every position, the
    computed tokens at their current layer input and the others at their frozen state (the reuse rule, recomputed
    rather than stored), and runs queries, attention and MLP for the computed rows only (`layer_at_rows`), with the
    training mask `a * layer(h) + (1 - a) * h`. Equal to the eager iteration within rounding."""
    batch, seq = computed.shape
    width = hidden_flat.shape[-1]
    index = computed.reshape(-1).nonzero().squeeze(-1)
    previous = hidden_flat.index_select(0, index)
    a = active.reshape(-1).index_select(0, index).to(hidden_flat.dtype).unsqueeze(-1)
    states = model.injection(previous, prelude_flat.index_select(0, index))
    states = a * states + (1 - a) * previous
    for layer in model.core:
        inputs = hidden_flat.index_copy(0, index, states).view(batch, seq, width)
        states = layer_at_rows(layer, inputs, index, layer_kwargs, model.config, a)
    return hidden_flat.index_copy(0, index, states)
