"""The iteration loss (`config.iteration_loss_weight`): the LM loss read out after every iteration before the
last, added to the training objective."""

import pytest
import torch

from conftest import tiny_model
from test_fast_path import padded_batch
from test_fast_training import VARIANTS, loss_and_gradients


def test_iteration_loss_is_the_mean_lm_loss_of_the_readouts_after_each_iteration():
    model = tiny_model(depth_mode="online", compute_penalty=0.2, iteration_loss_weight=0.7).eval()
    ids, mask = padded_batch(2, seq=10)
    labels = ids.masked_fill(mask == 0, -100)
    out = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    depth, prelude = model.config.max_depth, model.config.num_prelude_layers
    expected = []
    for t in range(1, depth):  # the states after iteration t, read out as if the recurrence stopped there
        # An online model given a budget of t iterations runs exactly the first t iterations of the full call
        # (halting reads only the states so far), so its output is the readout of the states after iteration t.
        truncated = model(ids, attention_mask=mask, labels=labels, max_depth=t, output_hidden_states=True)
        torch.testing.assert_close(truncated.hidden_states[1 + prelude + t - 1], out.hidden_states[1 + prelude + t - 1])
        expected.append(truncated.lm_loss)
    iteration_loss = torch.stack(expected).mean()
    torch.testing.assert_close(out.iteration_loss, iteration_loss)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.7 * iteration_loss + 0.2 * out.compute_loss)


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
def test_readouts_after_the_loop_stopped_are_the_final_output_and_cost_no_coda_pass(monkeypatch, recurrence):
    """Once no token is active the states stop changing: the readouts of those iterations are the forward's own
    output (no coda pass of their own), and the iteration loss is what reading every state out separately gives."""
    model = tiny_model(depth_mode="online", iteration_loss_weight=0.5, recurrence=recurrence)
    torch.nn.init.zeros_(model.model.depth_controller.halting_head.weight)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 10.0)  # halt as soon as allowed
    model.config.min_depth = model.model.depth_controller.min_depth = 2
    ids, mask = padded_batch(2, seq=10)
    labels = ids.masked_fill(mask == 0, -100)
    kwargs_seen = []
    real_readout = type(model.model).readout
    monkeypatch.setattr(type(model.model), "readout",
                        lambda self, state, kwargs, *rest: kwargs_seen.append(kwargs) or real_readout(self, state, kwargs, *rest))
    out = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert (out.depths[mask.bool()] == 2).all()
    assert len(kwargs_seen) == 1  # iteration 1 only: from iteration 2 on the state is the final one
    prelude, expected = model.config.num_prelude_layers, []
    for t in range(1, model.config.max_depth):  # every state read out on its own, as before the reuse
        readout = real_readout(model.model, out.hidden_states[1 + prelude + t - 1], kwargs_seen[0])
        expected.append(model.loss_function(logits=model.lm_head(readout), labels=labels, vocab_size=model.config.vocab_size))
    torch.testing.assert_close(out.iteration_loss, torch.stack(expected).mean(), rtol=1e-6, atol=1e-7)
    readouts = model.model(ids, attention_mask=mask, output_iteration_readouts=True).iteration_readouts
    assert len(readouts) == model.config.max_depth - 1
    assert all(r is readouts[-1] for r in readouts[1:])


def test_no_iteration_loss_by_default_or_without_labels():
    model = tiny_model(depth_mode="early").eval()
    ids, mask = padded_batch(2, seq=8)
    out = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    assert out.iteration_loss is None
    torch.testing.assert_close(out.loss, out.lm_loss + model.config.compute_penalty * out.compute_loss)
    model.config.iteration_loss_weight = 0.5
    assert model(ids, attention_mask=mask).iteration_loss is None


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_iteration_loss_trains_the_same_on_the_fast_path(variant):
    model = tiny_model(compute_penalty=0.3, iteration_loss_weight=0.5, **variant)
    ids, mask = padded_batch(3, seq=12)
    dense_loss, dense_depths, dense = loss_and_gradients(model, "dense", ids, mask)
    fast_loss, fast_depths, fast = loss_and_gradients(model, "fast", ids, mask)
    assert torch.equal(fast_depths, dense_depths)
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-13, atol=1e-13)
    assert fast.keys() == dense.keys()
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-11, atol=1e-13, msg=name)


def test_iteration_readouts_need_the_whole_sequence():
    model = tiny_model(depth_mode="online", iteration_loss_weight=0.5).eval()
    ids, mask = padded_batch(1, seq=8)
    first = model(ids[:, :5], use_cache=True)
    with pytest.raises(ValueError, match="whole sequence"):
        model.model(ids[:, 5:], cache=first.cache, output_iteration_readouts=True)


def test_iteration_loss_weight_must_be_a_nonnegative_number():
    with pytest.raises(ValueError, match="iteration_loss_weight"):
        tiny_model(iteration_loss_weight=-0.1)


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
@pytest.mark.parametrize("mode", ["online", "early"])
def test_readouts_at_the_supervised_positions_give_the_full_readouts_loss_and_gradients(monkeypatch, mode, recurrence):
    """The iteration loss reads its readouts at the supervised positions only (the coda's last layer runs its
    queries and MLP there): the same loss and gradients, in float64, as reading out every position."""
    from test_packing import float64_lm_loss

    from modeling_anira import AniraForCausalLM

    monkeypatch.setattr(AniraForCausalLM, "loss_function", property(lambda self: float64_lm_loss))
    model = tiny_model(depth_mode=mode, iteration_loss_weight=0.5, compute_penalty=0.2, recurrence=recurrence,
                       router_sampling="argmax", num_coda_layers=2).train()
    ids, mask = padded_batch(3, seq=12)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :6] = -100  # a prompt: only the later positions are supervised

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    out = model(ids, attention_mask=mask, labels=labels)
    fast = gradients(out.loss)
    full = model.model(ids, attention_mask=mask, output_iteration_readouts=True)
    assert all(r.shape == full.last_hidden_state.shape for r in full.iteration_readouts)
    lm = [float64_lm_loss(model.lm_head(r), labels, model.config.vocab_size) for r in full.iteration_readouts]
    final = float64_lm_loss(model.lm_head(full.last_hidden_state), labels, model.config.vocab_size)
    compute = model.compute_loss(full.compute_cost, full.depths, labels[..., 1:])
    reference = final + 0.5 * torch.stack(lm).mean() + 0.2 * compute
    torch.testing.assert_close(out.loss, reference, rtol=1e-12, atol=1e-13)
    expected = gradients(reference)
    assert expected.keys() == fast.keys()
    for name in expected:
        torch.testing.assert_close(fast[name], expected[name], rtol=1e-10, atol=1e-12, msg=name)
