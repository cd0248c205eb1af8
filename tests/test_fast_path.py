"""The fast recurrence (modeling_anira/fast_path.py) against the dense masked reference `AniraModel.recur`."""

import pytest
import torch

from conftest import tiny_model
from modeling_anira import AniraCache
from modeling_anira import fast_path
from modeling_anira.fast_path import _contiguous_runs

MODES = ["fixed", "early", "online"]


def padded_batch(batch: int = 3, seq: int = 11, seed: int = 1):
    """Left-padded rows of different lengths (row 0 unpadded)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 40, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, : 2 * row + 1] = 0
    return ids.masked_fill(mask == 0, 0), mask


def run(model, recurrence: str, ids, mask, **kwargs):
    model.model.recurrence = recurrence
    return model(ids, attention_mask=mask, **kwargs)


def decode(model, recurrence: str, ids, mask, prefill: int = 4, max_depth=None):
    """Prefill `prefill` tokens, then one token at a time; returns (logits [B, S, V], cache)."""
    model.model.recurrence = recurrence
    cache = AniraCache(model.config, max_depth=max_depth)
    logits = [model(ids[:, :prefill], attention_mask=mask[:, :prefill], cache=cache, max_depth=max_depth).logits]
    for i in range(prefill, ids.shape[1]):
        out = model(ids[:, i : i + 1], attention_mask=mask[:, : i + 1], cache=cache, max_depth=max_depth)
        logits.append(out.logits)
    return torch.cat(logits, dim=1), cache


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_fast_forward_equals_dense_forward(mode, batch, attn_implementation):
    model = tiny_model(depth_mode=mode, attn_implementation=attn_implementation)
    ids, mask = padded_batch(batch)
    dense = run(model, "dense", ids, mask, use_cache=False, output_hidden_states=True)
    fast = run(model, "fast", ids, mask, use_cache=False, output_hidden_states=True)
    real = mask.bool()
    torch.testing.assert_close(fast.logits[real], dense.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(fast.depths, dense.depths)
    for fast_state, dense_state in zip(fast.hidden_states, dense.hidden_states, strict=True):
        torch.testing.assert_close(fast_state[real], dense_state[real], rtol=1e-10, atol=1e-10)
    if mode != "fixed":
        assert dense.depths[real].unique().numel() > 1, "the test must exercise freezing"


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_fast_decoding_equals_dense_full_forward(mode, batch, attn_implementation):
    model = tiny_model(depth_mode=mode, attn_implementation=attn_implementation)
    ids, mask = padded_batch(batch)
    reference = run(model, "dense", ids, mask, use_cache=False)
    logits, cache = decode(model, "fast", ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], reference.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, reference.depths)


@pytest.mark.parametrize("mode", MODES)
def test_fast_and_dense_caches_hold_the_same_keys_values(mode):
    # The reuse rule: a frozen token's slot entries are its frozen state's keys/values in both paths.
    model = tiny_model(depth_mode=mode)
    ids, mask = padded_batch(3)
    _, dense = decode(model, "dense", ids, mask)
    _, fast = decode(model, "fast", ids, mask)
    real = mask.bool()
    for dense_layer, fast_layer in zip(dense.layers, fast.layers, strict=True):
        assert fast_layer.keys.shape == dense_layer.keys.shape
        for a, b in ((fast_layer.keys, dense_layer.keys), (fast_layer.values, dense_layer.values)):
            torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [dict(injection="concat"), dict(min_depth=2), dict(halting_objective="act")])
def test_fast_path_equals_dense_with_other_model_options(options):
    model = tiny_model(depth_mode="online", **options)
    ids, mask = padded_batch(3)
    reference = run(model, "dense", ids, mask, use_cache=False)
    logits, cache = decode(model, "fast", ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], reference.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, reference.depths)


def count_core_rows(model) -> list[int]:
    """Token rows that enter each core layer's MLP (the bulk of a layer's compute)."""
    rows = []
    for layer in model.model.core:
        layer.mlp.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[:-1].numel()))
    return rows


@pytest.mark.parametrize("mode", ["early", "online"])
def test_fast_path_computes_only_active_tokens(mode):
    model = tiny_model(depth_mode=mode, max_depth=6)
    ids = torch.randint(3, 40, (2, 16), generator=torch.Generator().manual_seed(5))
    rows = count_core_rows(model)
    out = run(model, "fast", ids, None, use_cache=True)
    assert sum(rows) == model.config.num_core_layers * int(out.depths.sum())
    rows.clear()
    run(model, "dense", ids, None, use_cache=True)
    assert sum(rows) > model.config.num_core_layers * int(out.depths.sum()), "dense runs frozen tokens too"


def test_contiguous_runs():
    assert _contiguous_runs([0, 1, 2, 5, 6, 9]) == [(0, 3), (5, 7), (9, 10)]
    assert _contiguous_runs([3]) == [(3, 4)]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_batch_rows_without_active_tokens_read_no_keys_values(attn_implementation):
    """In decoding, a sequence whose token halted takes no part in later iterations' attention (its cache rows
    are not read), and the logits still equal the dense reference, also when the rows taking part are not
    consecutive (one backend call per run of consecutive rows)."""
    model = tiny_model(depth_mode="online", max_depth=6, attn_implementation=attn_implementation)
    ids, mask = padded_batch(6, seq=12)
    key_rows = []
    for layer in model.model.core:
        original = layer.self_attn.mix_heads

        def recording(query, key, value, attention_mask, original=original, **kwargs):
            key_rows.append(key.shape[0])
            return original(query, key, value, attention_mask, **kwargs)

        layer.self_attn.mix_heads = recording
    reference = run(model, "dense", ids, mask, use_cache=False)
    model.model.recurrence = "fast"
    cache = AniraCache(model.config)
    model(ids[:, :4], attention_mask=mask[:, :4], cache=cache)
    for i in range(4, ids.shape[1]):
        key_rows.clear()
        logits = model(ids[:, i : i + 1], attention_mask=mask[:, : i + 1], cache=cache).logits
        real = mask[:, i].bool()
        torch.testing.assert_close(logits[real, 0], reference.logits[real, i], rtol=1e-10, atol=1e-10)
        depths = reference.depths[:, i]
        assert torch.equal(cache.depths[:, i], depths)
        active_rows = [int((depths >= t).sum()) for t in range(1, int(depths.max()) + 1)]
        assert sum(key_rows) == model.config.num_core_layers * sum(active_rows)
    decoded = reference.depths[:, 4:]
    steps_with_gaps = [step for step in range(decoded.shape[1]) for t in range(2, 7)
                       if len(_contiguous_runs((decoded[:, step] >= t).nonzero().squeeze(-1).tolist())) > 1]
    assert steps_with_gaps, "the test must exercise non-consecutive rows"


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("mode", ["early", "online"])
def test_query_blocks_of_a_long_chunk_equal_dense(monkeypatch, mode, attn_implementation):
    """A long chunk's packed queries attend block by block, each block to the keys up to its latest position
    only (QUERY_BLOCK lowered so that an 11-token prompt has several blocks); the result is unchanged."""
    monkeypatch.setattr(fast_path, "QUERY_BLOCK", 2)
    model = tiny_model(depth_mode=mode, attn_implementation=attn_implementation)
    key_lengths = []
    for layer in model.model.core:
        original = layer.self_attn.mix_heads

        def recording(query, key, value, attention_mask, original=original, **kwargs):
            key_lengths.append(key.shape[-2])
            return original(query, key, value, attention_mask, **kwargs)

        layer.self_attn.mix_heads = recording
    ids, mask = padded_batch(3)
    dense = run(model, "dense", ids, mask, use_cache=False)
    key_lengths.clear()
    fast = run(model, "fast", ids, mask, use_cache=False)
    real = mask.bool()
    torch.testing.assert_close(fast.logits[real], dense.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(fast.depths, dense.depths)
    assert min(key_lengths) < ids.shape[1], "early blocks must read fewer keys than the whole chunk"
    logits, cache = decode(model, "fast", ids, mask, prefill=7)
    torch.testing.assert_close(logits[real], dense.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, dense.depths)


def test_fast_path_stops_when_no_token_is_active():
    model = tiny_model(depth_mode="online", max_depth=8)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 50.0)  # every token halts at t = 1
    rows = count_core_rows(model)
    out = run(model, "fast", torch.randint(3, 40, (2, 7)), None)
    assert (out.depths == 1).all()
    assert sum(rows) == model.config.num_core_layers * 2 * 7


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_fast_path_with_raised_depth_budget_equals_dense(mode):
    model = tiny_model(depth_mode=mode, max_depth=4)
    ids, mask = padded_batch(3)
    reference = run(model, "dense", ids, mask, use_cache=False, max_depth=7)
    logits, cache = decode(model, "fast", ids, mask, max_depth=7)
    real = mask.bool()
    torch.testing.assert_close(logits[real], reference.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, reference.depths)
    assert reference.depths.max() > 4, "tokens must run past the trained budget, in both modes"
    if mode == "online":
        assert reference.depths[real].unique().numel() > 1, "tokens must also halt at different depths"


def test_attention_maps_use_the_dense_path(monkeypatch):
    import modeling_anira.modeling_anira as modeling

    calls = []
    monkeypatch.setattr(modeling, "fast_recur", lambda *args: calls.append(1) or pytest.fail("fast path used"))
    model = tiny_model(depth_mode="online", attn_implementation="eager")
    ids = torch.randint(3, 40, (1, 6))
    model.eval()(ids, output_attentions=True)
    model.model.recurrence = "dense"
    model(ids)
    model.train()(ids)
    assert not calls


def test_unknown_recurrence_is_an_error():
    model = tiny_model()
    model.model.recurrence = "sparse"
    with pytest.raises(ValueError, match="recurrence"):
        model(torch.randint(3, 40, (1, 4)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fast_path_in_lower_precision_runs_and_agrees_with_dense(monkeypatch, dtype):
    """bf16/fp32 inference through the packed, per-run and per-block attention (blocks forced small): finite
    logits, depths in range, and the dense path's logits wherever the two made the same depth decisions
    (gathered and full matmuls may round differently, so a threshold can flip in low precision)."""
    monkeypatch.setattr(fast_path, "QUERY_BLOCK", 3)
    model = tiny_model(dtype=dtype, depth_mode="online")
    ids, mask = padded_batch(4, seq=12)
    dense = run(model, "dense", ids, mask, use_cache=False)
    logits, cache = decode(model, "fast", ids, mask, prefill=8)
    real = mask.bool()
    assert torch.isfinite(logits[real]).all()
    assert ((cache.depths[real] >= 1) & (cache.depths[real] <= model.config.max_depth)).all()
    assert (cache.depths[~real] == -1).all()
    same = cache.depths == dense.depths
    assert same[real].float().mean() > 0.9
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-4
    rows_agree = (same | ~real).all(-1)  # a flipped decision changes later positions of that row
    assert rows_agree.any()
    torch.testing.assert_close(logits[rows_agree][real[rows_agree]].float(),
                               dense.logits[rows_agree][real[rows_agree]].float(), rtol=tolerance, atol=tolerance)
