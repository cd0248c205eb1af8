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
