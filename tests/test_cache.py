"""AniraCache: slot layout, the depth record, and exact incremental decoding (float64)."""

import pytest
import torch

from conftest import tiny_config, tiny_model
from modeling_anira import AniraCache

MODES = ["fixed", "early", "online"]


def test_slot_layout_gives_every_layer_application_its_own_slot():
    config = tiny_config(num_prelude_layers=2, num_core_layers=3, num_coda_layers=2, max_depth=4)
    cache = AniraCache(config)
    slots = [cache.prelude_slot(i) for i in range(2)] + [cache.coda_slot(i) for i in range(2)]
    slots += [cache.core_slot(t, l) for t in range(1, 5) for l in range(3)]
    assert slots == list(range(2 + 2 + 3 * 4)), "distinct, and iteration t's slots follow iteration t - 1's"
    assert len(cache.layers) == 2 + 2 + 3 and cache.iterations == 1, "only iteration 1 exists before a forward"


def filled_cache(batch: int = 3, seen: int = 5) -> AniraCache:
    cache = AniraCache(tiny_config(max_depth=2))
    for slot in range(len(cache.layers)):
        key = torch.arange(batch, dtype=torch.float).view(batch, 1, 1, 1).expand(batch, 2, seen, 4)
        cache.update(key, key + 100, slot)
    cache.record_depths(torch.arange(batch).view(batch, 1).expand(batch, seen).clone())
    return cache


def test_depth_record_follows_beam_reordering_expansion_selection_and_cropping():
    cache = filled_cache()
    beam_idx = torch.tensor([2, 0, 0])
    cache.reorder_cache(beam_idx)
    assert cache.depths[:, 0].tolist() == [2, 0, 0]
    assert cache.layers[3].keys[:, 0, 0, 0].tolist() == [2, 0, 0], "keys and depths move together"
    cache.batch_repeat_interleave(2)
    assert cache.depths[:, 0].tolist() == [2, 2, 0, 0, 0, 0]
    cache.batch_select_indices(torch.tensor([0, 2]))
    assert cache.depths[:, 0].tolist() == [2, 0]
    cache.crop(-2)
    assert cache.depths.shape == (2, 3) and cache.get_seq_length() == 3
    cache.reset()
    assert cache.depths is None


def test_slots_append_in_place_and_survive_reordering_and_cropping():
    cache = AniraCache(tiny_config(max_depth=1))
    expected = torch.zeros(2, 2, 0, 4)
    for step, length in enumerate((3, 1, 1, 2, 1)):
        chunk = torch.randn(2, 2, length, 4)
        keys, values = cache.update(chunk, -chunk, 0)
        expected = torch.cat([expected, chunk], dim=-2)
        assert torch.equal(keys, expected) and torch.equal(values, -expected)
        if step == 2:  # beam reordering and cropping replace the stored tensors; appending goes on from them
            cache.reorder_cache(torch.tensor([1, 1]))
            cache.crop(-1)
            expected = expected[[1, 1], :, :-1]
    assert cache.get_seq_length() == expected.shape[-2] == 7


def padded_batch(batch: int, seq: int = 10, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 40, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, : 3 * row] = 0  # left padding of different lengths
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_incremental_decoding_equals_one_full_forward(mode, batch, recurrence):
    model = tiny_model(depth_mode=mode)
    model.model.recurrence = recurrence
    ids, mask = padded_batch(batch)
    full = model(ids, attention_mask=mask, use_cache=False)
    cache = AniraCache(model.config)
    steps = [model(ids[:, :4], attention_mask=mask[:, :4], cache=cache).logits]
    for i in range(4, ids.shape[1]):
        steps.append(model(ids[:, i : i + 1], attention_mask=mask[:, : i + 1], cache=cache).logits)
    real = mask.bool()
    torch.testing.assert_close(torch.cat(steps, 1)[real], full.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, full.depths), "every token's depth is identical"
    assert (cache.depths[~real] == -1).all()
    if mode != "fixed":
        assert full.depths[real].unique().numel() > 1, "the test must exercise freezing"
    assert all(layer.keys.shape[-2] == ids.shape[1] for layer in cache.layers), "all slots stay the same length"


def test_generate_replaces_transformers_default_cache():
    from transformers import DynamicCache

    model = tiny_model()
    out = model(torch.randint(3, 40, (1, 5)), cache=DynamicCache(config=model.config))
    assert isinstance(out.cache, AniraCache)
    assert out.cache.iterations == int(out.depths.max()) + 1


def test_a_filled_cache_of_another_kind_is_a_clear_error():
    from transformers import DynamicCache

    model = tiny_model()
    cache = DynamicCache(config=model.config)
    cache.update(torch.zeros(1, 2, 3, 8, dtype=torch.float64), torch.zeros(1, 2, 3, 8, dtype=torch.float64), 0)
    with pytest.raises(ValueError, match="AniraCache"):
        model(torch.randint(3, 40, (1, 2)), attention_mask=torch.ones(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
def test_cache_slots_follow_the_iterations_run_not_the_budget(recurrence):
    """A budget of 200 whose tokens all halt after one iteration costs two iteration slots (iteration 1 and the
    frozen keys/values after it), not 200; a later token that runs deeper adds the slots it needs."""
    model = tiny_model(depth_mode="online", max_depth=8, recurrence=recurrence)
    head = model.model.depth_controller.halting_head
    torch.nn.init.constant_(head.bias, 50.0)  # every token halts after iteration 1
    ids = torch.randint(3, 40, (2, 9), generator=torch.Generator().manual_seed(3))
    cache = AniraCache(model.config)
    model(ids[:, :6], cache=cache, max_depth=200)
    config = model.config
    assert cache.iterations == 2
    assert len(cache.layers) == config.num_prelude_layers + config.num_coda_layers + 2 * config.num_core_layers
    torch.nn.init.constant_(head.bias, -50.0)  # now no token halts before the budget
    with torch.no_grad():
        step = model(ids[:, 6:], cache=cache, max_depth=5)
    assert (step.depths == 5).all() and cache.iterations == 6
    assert all(layer.keys.shape[-2] == 9 for layer in cache.layers), "new slots hold every earlier position"


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
def test_decoding_deeper_than_the_prompt_ran_equals_one_full_forward(recurrence):
    """Decoded tokens that go deeper than every prompt token add their iterations' slots during decoding,
    seeded with the earlier positions' frozen keys/values: still exactly one full forward."""
    model = tiny_model(depth_mode="online", max_depth=6, recurrence=recurrence)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 2.0)
    ids, mask = padded_batch(3, seq=12, seed=5)
    full = model(ids, attention_mask=mask, use_cache=False)
    prefill = 4
    real = mask.bool()
    assert full.depths[:, :prefill].max() < full.depths[:, prefill:].max(), "the test needs deeper later tokens"
    cache = AniraCache(model.config)
    steps = [model(ids[:, :prefill], attention_mask=mask[:, :prefill], cache=cache).logits]
    assert cache.iterations == int(full.depths[:, :prefill].max()) + 1
    for i in range(prefill, ids.shape[1]):
        steps.append(model(ids[:, i : i + 1], attention_mask=mask[:, : i + 1], cache=cache).logits)
    assert cache.iterations == int(full.depths.max()) + 1
    torch.testing.assert_close(torch.cat(steps, 1)[real], full.logits[real], rtol=1e-10, atol=1e-10)
    assert torch.equal(cache.depths, full.depths)


def test_a_depth_budget_beyond_the_limit_is_a_clear_error():
    from modeling_anira.configuration_anira import MAX_DEPTH_LIMIT

    model = tiny_model(depth_mode="online")
    with pytest.raises(ValueError, match="max_depth"):
        model(torch.randint(3, 40, (1, 4)), max_depth=MAX_DEPTH_LIMIT + 1)


def test_a_filled_cache_serves_a_raised_budget():
    """The cache has no size: continuing with a larger budget than the prompt had adds the slots it needs (the
    dense and fast paths agree on the result)."""
    ids = torch.randint(3, 40, (2, 7), generator=torch.Generator().manual_seed(0))
    logits = []
    for recurrence in ("dense", "fast"):
        model = tiny_model(depth_mode="online", max_depth=4, recurrence=recurrence)
        torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, -4.0)  # tokens want to go deep
        cache = model(ids[:, :6]).cache
        assert cache.iterations == 5
        step = model(ids[:, 6:], cache=cache, max_depth=7)
        assert step.depths.max() > 4 and cache.max_depth == 7 and cache.iterations == int(step.depths.max()) + 1
        logits.append(step.logits)
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-10, atol=1e-10)


def test_spare_room_of_a_slot_is_zeros_not_uninitialised_memory():
    """The room a slot keeps for later positions is never read, but its bytes are defined: a cache holds the same
    bytes however it was produced (eagerly, compiled or exported), not whatever memory it was given."""
    from modeling_anira.cache_anira import GrowingLayer

    chunks = [torch.randn(2, 2, length, 4, generator=torch.Generator().manual_seed(length)) for length in (3, 1, 2, 5)]
    layer = GrowingLayer()
    for chunk in chunks:
        garbage = [torch.full((2, 2, capacity, 4), float("nan")) for capacity in (6, 14, 22)]
        del garbage  # freed memory that the next buffer may be given
        layer.update(chunk, -chunk)
    filled = layer.get_seq_length()
    assert filled == 11 and layer._key_buffer.shape[-2] > filled, "the test needs spare room"
    assert (layer._key_buffer[..., filled:, :] == 0).all() and (layer._value_buffer[..., filled:, :] == 0).all()
    assert torch.equal(layer.keys, torch.cat(chunks, dim=-2))


@pytest.mark.parametrize("bias, budget, iterations", [(50.0, None, 2), (-50.0, None, 5), (-50.0, 7, 8)])
def test_len_of_the_cache_is_the_layer_count_whatever_depth_the_tokens_reached(bias, budget, iterations):
    """len(cache) is what transformers compares with config.num_hidden_layers (generate's output checks, assisted
    decoding): a token's layer applications at the budget, whether the tokens all stopped after one iteration (two
    stored iteration slots), all ran the budget (one more), or ran a raised budget. Every stored slot holds every
    position."""
    model = tiny_model(depth_mode="online", max_depth=4)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, bias)
    ids = torch.randint(3, 40, (2, 6), generator=torch.Generator().manual_seed(1))
    out = model(ids, max_depth=budget)
    config, cache = model.config, out.cache
    assert cache.iterations == iterations
    assert len(cache) == config.layer_applications(budget or config.max_depth)
    if budget is None:
        assert len(cache) == config.num_hidden_layers
    shape = (2, config.num_key_value_heads, 6, config.head_dim)
    assert all(layer.keys.shape == layer.values.shape == shape for layer in cache.layers)


@pytest.mark.parametrize("mode", MODES)
def test_assisted_decoding_gives_the_greedy_sequences_and_depths(mode):
    """Assisted decoding verifies several drafted tokens in one forward and crops the cache back to the accepted
    ones: with a draft model that agrees (the model itself), one that mostly does not, and prompt lookup, the
    sequences and per-token depths are greedy search's, and the cache's length is still the model's layer count."""
    model = tiny_model(depth_mode=mode, recurrence="fast")
    ids = torch.randint(3, 40, (1, 6), generator=torch.Generator().manual_seed(3))
    kwargs = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    greedy = model.generate(ids, **kwargs)
    if mode != "fixed":
        assert greedy.depths[0, :-1].unique().numel() > 1, "the test needs tokens of different depths"
    draft = tiny_model(depth_mode=mode, recurrence="fast", seed=1)
    for assistance in (dict(assistant_model=model), dict(assistant_model=draft), dict(prompt_lookup_num_tokens=2)):
        out = model.generate(ids, **kwargs, **assistance)
        assert torch.equal(out.sequences, greedy.sequences) and torch.equal(out.depths, greedy.depths), assistance
        assert len(out.cache) == model.config.num_hidden_layers
