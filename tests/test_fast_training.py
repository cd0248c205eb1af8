"""The training fast path (modeling_anira/fast_path.py in training) against the dense masked reference:
the same loss and the same gradient for every parameter, while computing only the token-iterations that
the gradient needs."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from conftest import tiny_model
from modeling_anira import fast_path
from test_fast_path import padded_batch
from test_trainer_accumulation import Rows

VARIANTS = [
    dict(depth_mode="fixed"),
    dict(depth_mode="early"),
    dict(depth_mode="early", router_gradient="next"),
    dict(depth_mode="early", router_sampling="argmax"),
    dict(depth_mode="online"),
    dict(depth_mode="online", halting_objective="act"),
    dict(depth_mode="online", halting_objective="pondernet"),
    dict(depth_mode="online", min_depth=2, num_core_layers=1, injection="concat"),
]


def loss_and_gradients(model, recurrence: str, ids, mask, seed: int = 0):
    """Loss, depths and {name: gradient} of one training forward/backward (same Gumbel noise for both paths)."""
    model.train()
    model.model.recurrence = recurrence
    model.zero_grad()
    torch.manual_seed(seed)
    labels = ids.masked_fill(mask == 0, -100)
    out = model(ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = {name.removeprefix("_orig_mod."): p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.depths, grads


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_fast_training_gives_the_dense_loss_and_gradients_in_float64(variant, attn_implementation):
    model = tiny_model(attn_implementation=attn_implementation, compute_penalty=0.3, **variant)
    ids, mask = padded_batch(3, seq=12)  # left padding in rows 1 and 2
    dense_loss, dense_depths, dense = loss_and_gradients(model, "dense", ids, mask)
    fast_loss, fast_depths, fast = loss_and_gradients(model, "fast", ids, mask)
    assert torch.equal(fast_depths, dense_depths)
    if variant["depth_mode"] != "fixed":
        assert dense_depths[mask.bool()].unique().numel() > 1, "the test must exercise tokens of different depths"
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-13, atol=1e-13)
    assert fast.keys() == dense.keys()
    assert "model.depth_controller.router.weight" in dense or variant["depth_mode"] != "early"
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-11, atol=1e-13, msg=name)


def test_rows_without_active_tokens_join_the_one_attention_call_in_training(monkeypatch):
    """In training the keys are the chunk's own, so the rows from the first to the last with an active token
    attend in one call, a row without active tokens in between taking dummy queries: exact all the same."""
    gaps, calls = [], []
    real_packing = fast_path.ActivePacking

    def recording(active, *args):
        packing = real_packing(active, *args)
        busy = active.any(-1)[packing.rows]
        gaps.append(bool((~busy).any()))
        calls.append(len(packing.runs))
        return packing

    monkeypatch.setattr(fast_path, "ActivePacking", recording)
    model = tiny_model(attn_implementation="sdpa", depth_mode="online", max_depth=6, compute_penalty=0.3)
    ids, mask = padded_batch(6, seq=12)
    mask[2, :-1] = 0  # row 2 holds one real token: it stops early while rows 1 and 3 run on
    dense_loss, _, dense = loss_and_gradients(model, "dense", ids, mask)
    fast_loss, _, fast = loss_and_gradients(model, "fast", ids, mask)
    assert any(gaps), "the test must exercise a row without active tokens between rows with some"
    assert set(calls) == {1}
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-13, atol=1e-13)
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-11, atol=1e-13, msg=name)


def test_overflow_split_of_the_fullest_rows_is_exact_in_training(monkeypatch):
    """When a few rows hold most active tokens, packed rows are cut at `cap` queries and the rest of the fullest
    rows attend in a second call over those rows' keys/values alone: same loss and gradients as dense."""
    splits = []
    real_packing = fast_path.ActivePacking

    def recording(active, *args):
        packing = real_packing(active, *args)
        splits.append(packing.overflow_rows.numel() > 0 and packing.cap < packing.width)
        return packing

    monkeypatch.setattr(fast_path, "ActivePacking", recording)
    model = tiny_model(attn_implementation="sdpa", depth_mode="online", max_depth=6, compute_penalty=0.3)
    ids, mask = padded_batch(8, seq=16)
    mask[1:, :-3] = 0  # rows 1-7 hold three real tokens each, row 0 sixteen: row 0 overflows any small cap
    dense_loss, _, dense = loss_and_gradients(model, "dense", ids, mask)
    fast_loss, _, fast = loss_and_gradients(model, "fast", ids, mask)
    assert any(splits), "the test must exercise an overflow split"
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-13, atol=1e-13)
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-11, atol=1e-13, msg=name)


def test_overflow_cap_minimises_the_packed_slots():
    # one row of 10 active tokens among rows of 1-2: cut at 2, the tenfold row's 8 others go to the second call
    assert fast_path._overflow_cap([1, 1, 2, 2, 2, 10], 10) == 2
    # every row about as full: a split would save too little for its extra call
    assert fast_path._overflow_cap([8, 9, 9, 10], 10) == 10
    assert fast_path._overflow_cap([5], 5) == 5
    # rows without active tokens (in training, rows between busy ones join the call) are never the cut
    assert fast_path._overflow_cap([0, 0, 0, 0, 0, 5], 5) == 5


def test_decoding_packs_only_the_rows_with_active_tokens():
    active = torch.tensor([[True], [False], [True]])
    assert fast_path.ActivePacking(active, None).runs == [(0, 1), (2, 3)]
    chunk = torch.tensor([[True, True], [False, False], [False, True]])
    causal = torch.ones(2, 2, dtype=torch.bool).tril().view(1, 1, 2, 2)
    assert fast_path.ActivePacking(chunk, causal, whole_chunk=True).runs == [(0, 3)]


def computed_rows(monkeypatch, model, ids, mask) -> int:
    """Token-iterations the fast path computes in one training forward (rows of its gathered iterations)."""
    rows = []
    real_packing = fast_path.ActivePacking

    def counting(active, attention_mask, *args):
        rows.append(int(active.sum()))
        return real_packing(active, attention_mask, *args)

    monkeypatch.setattr(fast_path, "ActivePacking", counting)
    model.train()
    model.model.recurrence = "fast"
    out = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
    return sum(rows), out.depths


@pytest.mark.parametrize("variant", [dict(depth_mode="online"), dict(depth_mode="early", router_gradient="next")],
                         ids=["online", "early-next"])
def test_fast_training_computes_each_token_up_to_one_iteration_past_its_depth(monkeypatch, variant):
    model = tiny_model(**variant)
    ids, mask = padded_batch(3, seq=12)
    computed, depths = computed_rows(monkeypatch, model, ids, mask)
    real = depths[mask.bool()]
    assert real.min() < model.config.max_depth - 1, "some tokens must stop early"
    # Iteration 1 computes every real token densely when the batch has no padding; here rows 1-2 are padded,
    # so every iteration is gathered and the count is exact: each token's depth plus its one extra iteration.
    expected = int(torch.clamp(real + 1, max=model.config.max_depth).sum())
    assert computed == expected


def test_exact_early_router_gradient_runs_every_iteration_for_every_token(monkeypatch):
    model = tiny_model(depth_mode="early")
    ids, mask = padded_batch(3, seq=12)
    computed, depths = computed_rows(monkeypatch, model, ids, mask)
    assert computed == 0  # no gathered iteration: all D dense, as the estimator needs
    assert depths[mask.bool()].min() < model.config.max_depth


def test_router_gradient_next_changes_the_gradient_not_the_forward():
    full = tiny_model(depth_mode="early", compute_penalty=0.0)
    local = tiny_model(depth_mode="early", compute_penalty=0.0, router_gradient="next")
    ids, mask = padded_batch(3, seq=12)
    full_loss, full_depths, full_grads = loss_and_gradients(full, "dense", ids, mask)
    local_loss, local_depths, local_grads = loss_and_gradients(local, "dense", ids, mask)
    assert torch.equal(full_depths, local_depths)
    torch.testing.assert_close(local_loss, full_loss, rtol=0, atol=0)
    router = "model.depth_controller.router.weight"
    assert not torch.allclose(local_grads[router], full_grads[router])
    coda = "model.coda.0.mlp.down_proj.weight"  # after the recurrence: only forward values reach it
    torch.testing.assert_close(local_grads[coda], full_grads[coda], rtol=0, atol=0)


def test_router_sampling_argmax_trains_at_the_depth_inference_takes():
    """`router_sampling="argmax"`: the training forward runs each token at the router's most likely depth, as
    evaluation does, and the router still gets the straight-through gradient; "gumbel" samples other depths."""
    model = tiny_model(depth_mode="early", compute_penalty=0.3, router_sampling="argmax")
    ids, mask = padded_batch(3, seq=12)
    with torch.no_grad():
        inference_depths = model.eval()(ids, attention_mask=mask).depths
    loss, depths, grads = loss_and_gradients(model, "dense", ids, mask)
    assert torch.equal(depths, inference_depths)
    assert grads["model.depth_controller.router.weight"].abs().sum() > 0
    sampled = tiny_model(depth_mode="early", compute_penalty=0.3)  # same weights, the default sampling
    sampled_depths = [loss_and_gradients(sampled, "dense", ids, mask, seed=seed)[1] for seed in range(4)]
    assert any(not torch.equal(d, inference_depths) for d in sampled_depths)


def trainer_update(tmp_path, recurrence: str, batch: int, accumulation: int) -> dict[str, torch.Tensor]:
    model = tiny_model(depth_mode="online", compute_penalty=0.5).train()
    model.model.recurrence = recurrence
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{recurrence}{batch}{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=2, optim="sgd", learning_rate=0.5,
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[], save_strategy="no",
        use_cpu=True, seed=0, dataloader_drop_last=True,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model=model, args=args, train_dataset=Rows()).train()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def test_trainer_updates_with_gradient_accumulation_are_the_dense_ones(tmp_path):
    dense = trainer_update(tmp_path, "dense", batch=2, accumulation=2)
    fast = trainer_update(tmp_path, "fast", batch=2, accumulation=2)
    large = trainer_update(tmp_path, "fast", batch=4, accumulation=1)
    assert dense["model.depth_controller.halting_head.bias"].abs().max() > 0
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(large[name], dense[name], rtol=1e-10, atol=1e-12, msg=name)


BF16_TOLERANCE = 3e-2  # relative to the largest entry of each gradient


@pytest.mark.parametrize("mode", ["online", "early"])
def test_fast_training_under_bf16_autocast_agrees_with_dense_within_the_stated_tolerance(mode):
    """Under bf16 autocast the gathered and the full matmuls round differently, so the two paths agree to bf16
    precision, not exactly: the loss within 1e-2 relative and every gradient within BF16_TOLERANCE of its largest
    entry, when the depth decisions agree (a decision on the threshold could flip; the test model's do not)."""
    model = tiny_model(dtype=torch.float32, depth_mode=mode, compute_penalty=0.3, router_gradient="full")
    ids, mask = padded_batch(3, seq=12)
    results = []
    for recurrence in ("dense", "fast"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(loss_and_gradients(model, recurrence, ids, mask))
    (dense_loss, dense_depths, dense), (fast_loss, fast_depths, fast) = results
    assert torch.equal(fast_depths, dense_depths)
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-2, atol=0)
    for name in dense:
        scale = dense[name].abs().max()
        assert (fast[name] - dense[name]).abs().max() <= BF16_TOLERANCE * scale, name


def test_training_uses_the_fast_path_except_with_checkpointing_attention_maps_or_dense(monkeypatch):
    import modeling_anira.modeling_anira as modeling

    calls = []
    real = modeling.fast_recur
    monkeypatch.setattr(modeling, "fast_recur", lambda *args: calls.append(1) or real(*args))
    model = tiny_model(depth_mode="online", recurrence="fast")
    ids = torch.randint(3, 40, (1, 6))
    model.train()(ids)
    assert calls == [1]
    model(ids, output_attentions=True)
    model.model.recurrence = "dense"
    model(ids)
    model.model.recurrence = "fast"
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model(ids)
    assert calls == [1]


def test_gradient_checkpointing_runs_the_dense_path_with_the_fast_paths_gradients():
    ids, mask = padded_batch(2, seq=10)
    model = tiny_model(depth_mode="online")
    _, _, fast = loss_and_gradients(model, "fast", ids, mask)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    _, _, checkpointed = loss_and_gradients(model, "fast", ids, mask)
    for name in fast:
        torch.testing.assert_close(checkpointed[name], fast[name], rtol=1e-11, atol=1e-13, msg=name)


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_compiled_training_step_gives_the_eager_loss_and_gradients(mode):
    """Fixed mode compiles with fullgraph=True (its fast path is the dense iteration); online mode compiles with
    graph breaks at the data-dependent gathers."""
    model = tiny_model(dtype=torch.float32, depth_mode=mode, recurrence="fast")
    ids, mask = padded_batch(3, seq=12)
    eager_loss, _, eager = loss_and_gradients(model, "fast", ids, mask)
    compiled = torch.compile(model, backend="eager", fullgraph=mode == "fixed")
    compiled_loss, _, compiled_grads = loss_and_gradients(compiled, "fast", ids, mask)
    torch.testing.assert_close(compiled_loss, eager_loss)
    for name in eager:
        torch.testing.assert_close(compiled_grads[name], eager[name], msg=name)
