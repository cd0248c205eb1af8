"""AniraForCausalLM: the recurrence, the three depth modes, the loss and the HF plumbing (dense reference path)."""

import pytest
import torch

from conftest import tiny_config, tiny_model
from modeling_anira import AniraCache, AniraForCausalLM

MODES = ["fixed", "early", "online"]


def random_ids(batch: int, seq: int, vocab: int = 40, seed: int = 1) -> torch.LongTensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, seq), generator=generator)


def count_core_calls(model: AniraForCausalLM) -> list[int]:
    calls = []
    for layer in model.model.core:
        layer.register_forward_hook(lambda module, args, kwargs_or_out, *rest: calls.append(1), with_kwargs=False)
    return calls


# ------------------------------------------------------------------------------------------ depth modes


def test_fixed_mode_runs_every_token_exactly_max_depth_iterations():
    model = tiny_model(depth_mode="fixed", max_depth=4)
    calls = count_core_calls(model)
    out = model(random_ids(2, 9))
    assert (out.depths == 4).all()
    assert len(calls) == 4 * model.config.num_core_layers
    assert torch.equal(out.depth_probs.argmax(-1), torch.full_like(out.depths, 3))


def test_early_mode_eval_depth_is_router_argmax():
    model = tiny_model(depth_mode="early", max_depth=6, min_depth=2)
    ids = random_ids(3, 11)
    out = model(ids, output_hidden_states=True)
    prelude_states = out.hidden_states[1 + model.config.num_prelude_layers - 1]
    controller = model.model.depth_controller
    logits = controller.router(controller.norm(prelude_states))
    expected = logits.argmax(-1) + 2  # depths min_depth..max_depth
    assert torch.equal(out.depths, expected)
    assert out.depths.unique().numel() > 1, "the test must exercise several depths"
    assert (out.depth_probs[..., :1] == 0).all(), "no probability below min_depth"
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))


def test_early_mode_training_draws_hard_one_hot_with_gradient_to_router():
    model = tiny_model(depth_mode="early", max_depth=5).train()
    ids = random_ids(2, 9)
    out = model(ids, labels=ids)
    assert ((out.depths >= 1) & (out.depths <= 5)).all()
    out.lm_loss.backward()
    assert model.model.depth_controller.router.weight.grad.abs().sum() > 0, "LM loss must reach the router"


@pytest.mark.parametrize("min_depth", [1, 2])
def test_online_mode_halts_at_first_iteration_reaching_threshold(min_depth):
    model = tiny_model(depth_mode="online", max_depth=6, min_depth=min_depth, halting_threshold=0.5)
    out = model(random_ids(3, 12))
    lam = out.halting_probs  # lambda at each iteration a token ran
    depths = out.depths
    assert depths.unique().numel() > 2, "the test must exercise several depths"
    for b, s in torch.cartesian_prod(torch.arange(3), torch.arange(12)).tolist():
        d = int(depths[b, s])
        assert min_depth <= d <= 6
        ran = lam[b, s, :d]
        assert (lam[b, s, d:] == 0).all()
        for t in range(min_depth, d):  # iterations t (1-based) < d: not halted yet
            assert ran[t - 1] < 0.5
        if d < 6:
            assert ran[d - 1] >= 0.5
    # the halting distribution is a distribution over depths, zero below min_depth
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))
    assert (out.depth_probs[..., : min_depth - 1] == 0).all()


@pytest.mark.parametrize("objective", ["act", "pondernet"])
def test_optional_halting_objectives_train_and_report(objective):
    model = tiny_model(depth_mode="online", halting_objective=objective, max_depth=5).train()
    ids = random_ids(2, 8)
    out = model(ids, labels=ids)
    assert torch.isfinite(out.loss) and torch.isfinite(out.compute_loss)
    assert ((out.depths >= 1) & (out.depths <= 5)).all()
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))
    out.loss.backward()
    assert model.model.depth_controller.halting_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_depth_budget_can_be_raised_at_inference(mode):
    model = tiny_model(depth_mode=mode, max_depth=3, halting_threshold=0.99)
    out = model(random_ids(1, 6), max_depth=7)
    assert out.depths.max() > 3
    assert out.depth_probs.shape[-1] == 7


def test_early_mode_refuses_a_raised_depth_budget():
    model = tiny_model(depth_mode="early", max_depth=3)
    with pytest.raises(ValueError, match="early"):
        model(random_ids(1, 4), max_depth=5)


def test_loop_stops_when_no_token_is_active():
    model = tiny_model(depth_mode="online", max_depth=8)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 30.0)  # everyone halts at once
    calls = count_core_calls(model)
    out = model(random_ids(2, 5))
    assert (out.depths == 1).all()
    assert len(calls) == model.config.num_core_layers


# ---------------------------------------------------------------------------------- frozen-token semantics


@pytest.mark.parametrize("mode", ["early", "online"])
def test_halted_token_state_is_unchanged_by_later_iterations(mode):
    model = tiny_model(depth_mode=mode, max_depth=6)
    out = model(random_ids(2, 10), output_hidden_states=True)
    first = 1 + model.config.num_prelude_layers  # hidden_states: embeddings, prelude..., iterations..., coda...
    ran = out.depths.max().item()
    iterations = torch.stack(out.hidden_states[first : first + ran], dim=2)  # [B, S, T, H]
    assert out.depths.min() < ran, "some token must halt before others"
    for b in range(2):
        for s in range(10):
            d = int(out.depths[b, s])
            frozen = iterations[b, s, d - 1]
            for t in range(d, ran):
                assert torch.equal(iterations[b, s, t], frozen)


@pytest.mark.parametrize("mode", ["early", "online"])
def test_halted_token_serves_keys_values_of_its_frozen_state(mode):
    model = tiny_model(depth_mode=mode, max_depth=6)
    ids = random_ids(1, 10)
    out = model(ids, use_cache=True, output_hidden_states=True)
    cache: AniraCache = out.cache
    first = 1 + model.config.num_prelude_layers
    ran = out.depths.max().item()
    positions = torch.arange(10).unsqueeze(0)
    cos_sin = model.model.rotary_emb(out.hidden_states[0], positions)
    checked = 0
    for s in range(10):
        d = int(out.depths[0, s])
        frozen = out.hidden_states[first + d - 1][:, s : s + 1]
        for index, layer in enumerate(model.model.core):
            key, value = layer.key_value(frozen, tuple(x[:, s : s + 1] for x in cos_sin))
            for t in range(d + 1, model.config.max_depth + 1):  # every later slot, also after the loop stopped
                slot = cache.layers[cache.core_slot(t, index)]
                torch.testing.assert_close(slot.keys[:, :, s : s + 1], key, rtol=0, atol=1e-12)
                torch.testing.assert_close(slot.values[:, :, s : s + 1], value, rtol=0, atol=1e-12)
                checked += 1
    assert checked > 0 and ran <= model.config.max_depth


# -------------------------------------------------------------------------------- causality and padding


@pytest.mark.parametrize("mode", MODES)
def test_changing_a_token_changes_nothing_before_it(mode):
    model = tiny_model(depth_mode=mode)
    ids = random_ids(1, 12)
    changed = ids.clone()
    j = 7
    changed[0, j] = (ids[0, j] + 5) % 37 + 3
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a.logits[:, :j], b.logits[:, :j], rtol=0, atol=1e-12)
    assert torch.equal(a.depths[:, :j], b.depths[:, :j])
    assert not torch.equal(a.logits[:, j:], b.logits[:, j:])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_left_padded_batch_equals_each_sequence_alone(mode, attn_implementation):
    model = tiny_model(depth_mode=mode)
    model.config._attn_implementation = attn_implementation
    lengths = [9, 5, 7]
    seqs = [random_ids(1, n, seed=n)[0] for n in lengths]
    width = max(lengths)
    ids = torch.full((3, width), model.config.pad_token_id)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    batch = model(ids, attention_mask=mask)
    for row, seq in enumerate(seqs):
        alone = model(seq.unsqueeze(0))
        n = len(seq)
        torch.testing.assert_close(batch.logits[row, width - n :], alone.logits[0], rtol=0, atol=1e-10)
        assert torch.equal(batch.depths[row, width - n :], alone.depths[0])
        assert (batch.depths[row, : width - n] == -1).all()


def test_eager_and_sdpa_attention_agree():
    model = tiny_model(depth_mode="online")
    ids = random_ids(2, 9)
    model.config._attn_implementation = "eager"
    eager = model(ids)
    model.config._attn_implementation = "sdpa"
    sdpa = model(ids)
    torch.testing.assert_close(eager.logits, sdpa.logits, rtol=0, atol=1e-10)
    assert torch.equal(eager.depths, sdpa.depths)


# ------------------------------------------------------------------------------------------------- loss


def lm_batch(n: int, seq: int = 10, seed: int = 3):
    ids = random_ids(n, seq, seed=seed)
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # supervised answer only, as in the tasks
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # one padded row, so real and supervised counts differ between micro-batches
    labels[0, :2] = -100
    return ids, mask, labels


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_gradient_accumulation_equals_one_large_batch_compute_term_included(mode):
    # Online training is deterministic (straight-through), so the two runs see the same depths.
    model = tiny_model(depth_mode=mode, compute_penalty=0.5).train()
    ids, mask, labels = lm_batch(4)

    model.zero_grad()
    big = model(ids, attention_mask=mask, labels=labels)
    big.loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert big.compute_loss > 0

    model.zero_grad()
    num_items = (labels[:, 1:] != -100).sum()  # what the Trainer passes: supervised tokens of all micro-batches
    for part in (slice(0, 1), slice(1, 3), slice(3, 4)):  # uneven micro-batches
        out = model(ids[part], attention_mask=mask[part], labels=labels[part], num_items_in_batch=num_items)
        out.loss.backward()
    for name, grad in reference.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-9, atol=1e-12, msg=name)
    if mode == "online":
        assert reference["model.depth_controller.halting_head.bias"].abs() > 0, "compute term must have a gradient"


def test_loss_is_lm_loss_plus_weighted_compute_loss():
    model = tiny_model(depth_mode="online", compute_penalty=0.3)
    ids, mask, labels = lm_batch(2)
    out = model(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.3 * out.compute_loss)
    real = mask.bool()
    expected = (out.expected_depth[real] / model.config.max_depth).sum() / (labels[:, 1:] != -100).sum()
    torch.testing.assert_close(out.compute_loss, expected)


# ------------------------------------------------------------------------------------------ parameters


def test_core_parameters_do_not_depend_on_max_depth():
    for mode in MODES:
        shallow = dict(AniraForCausalLM(tiny_config(depth_mode=mode, max_depth=2)).named_parameters())
        deep = dict(AniraForCausalLM(tiny_config(depth_mode=mode, max_depth=9)).named_parameters())
        assert shallow.keys() == deep.keys()
        differing = {n for n in shallow if shallow[n].shape != deep[n].shape}
        assert differing == ({"model.depth_controller.router.weight", "model.depth_controller.router.bias"}
                             if mode == "early" else set())


def test_controllers_start_at_max_depth():
    for mode in ("early", "online"):
        model = AniraForCausalLM(tiny_config(depth_mode=mode, depth_init_bias=3.0)).eval()
        assert (model(random_ids(2, 8)).depths == model.config.max_depth).all()


# ------------------------------------------------------------------------------------------ bad input


def test_out_of_vocabulary_token_id_is_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="token id 40"):
        model(torch.tensor([[3, 4, 40]]))


def test_sequence_longer_than_max_positions_is_an_error():
    model = tiny_model(max_position_embeddings=16)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(random_ids(1, 17))


def test_attention_mask_of_wrong_length_is_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(random_ids(1, 6), attention_mask=torch.ones(1, 5, dtype=torch.long))


# --------------------------------------------------------------------------------- numerics and training


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_and_backward_are_finite(dtype):
    model = tiny_model(dtype=dtype, depth_mode="online").train()
    ids, mask, labels = lm_batch(2)
    out = model(ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids, mask, labels = lm_batch(2)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(depth_mode="online").train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed)


@pytest.mark.parametrize("mode", MODES)
def test_a_few_hundred_steps_lower_the_loss(mode):
    """Learn `next = previous + 1 (mod 20)` on random starts: a task that needs attention to one token."""
    torch.manual_seed(0)
    model = AniraForCausalLM(tiny_config(depth_mode=mode, vocab_size=24, max_depth=3, compute_penalty=0.01)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(150):
        start = torch.randint(0, 20, (16, 1))
        ids = (start + torch.arange(10)) % 20 + 3
        out = model(ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.lm_loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.1 * first, (first, last)
