"""Holding full depth until the task is partly learned (`--depth_hold_accuracy`): the controllers' switch and the
schedule that flips it. Held, a training forward runs every token for max_depth iterations and the controller gets
no gradient; evaluation ignores the switch; the penalty waits for the release; a resumed run keeps the release step."""

import pytest
import torch

from anira_study.callbacks import ComputePenaltyCallback, DepthHoldCallback
from conftest import load_script, tiny_model
from test_fast_path import padded_batch
from test_fast_training import loss_and_gradients
from test_train import train_argv

CONTROLLED = [dict(depth_mode="early"), dict(depth_mode="early", router_gradient="next"), dict(depth_mode="online"),
              dict(depth_mode="online", halting_objective="act")]


def held(model, hold: bool = True):
    model.model.depth_controller.hold_full_depth = hold
    return model


@pytest.mark.parametrize("variant", CONTROLLED, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_held_training_runs_max_depth_and_leaves_the_controller_untrained(variant):
    model = held(tiny_model(depth_init_bias=-2.0, max_depth=4, compute_penalty=0.0, **variant))
    ids, mask = padded_batch(3, seq=12)
    dense_loss, dense_depths, dense = loss_and_gradients(model, "dense", ids, mask)
    fast_loss, fast_depths, fast = loss_and_gradients(model, "fast", ids, mask)
    real = mask.bool()
    assert (dense_depths[real] == 4).all() and torch.equal(fast_depths, dense_depths)
    torch.testing.assert_close(fast_loss, dense_loss, rtol=1e-13, atol=1e-13)
    controller = [name for name in dense if "depth_controller" in name]
    assert controller, "the controller stays in the graph (DDP needs every parameter to get a gradient)"
    for name in dense:
        torch.testing.assert_close(fast[name], dense[name], rtol=1e-11, atol=1e-13, msg=name)
        if name in controller:
            assert not dense[name].any(), f"{name} was trained while held"
    # Released, the same weights pick their own depths (the init bias -2 points away from max_depth), and the
    # controller is trained again.
    _, free_depths, free = loss_and_gradients(held(model, False), "fast", ids, mask)
    assert (free_depths[real] < 4).any()
    assert any(free[name].any() for name in controller)


def test_evaluation_ignores_the_hold():
    model = tiny_model(depth_mode="online", depth_init_bias=-2.0, max_depth=4).eval()
    ids, mask = padded_batch(2, seq=10)
    with torch.no_grad():
        free = model(ids, attention_mask=mask).depths
        hold = held(model)(ids, attention_mask=mask).depths
    assert torch.equal(hold, free) and (free[mask.bool()] < 4).any()


class _Probe:
    def __init__(self):
        self.latest, self.trainer = {}, None


def _model():
    inner = torch.nn.Module()
    inner.config = type("Config", (), {"compute_penalty": 0.0})()
    inner.model = torch.nn.Module()
    inner.model.depth_controller = torch.nn.Module()
    return inner


def test_hold_releases_at_the_gate_and_the_penalty_waits_for_it():
    probe, model = _Probe(), _model()
    hold = DepthHoldCallback(probe, accuracy=0.9)
    penalty = ComputePenaltyCallback(target=0.2, ramp_steps=2, hold=hold)  # no gate of its own, no warm-up
    state = type("State", (), {"global_step": 0, "log_history": []})()
    hold.on_train_begin(None, state, None, model=model)
    held_steps, penalties = [], []
    for step in range(8):
        state.global_step = step
        probe.latest = {"probe/token_accuracy": 0.95 if step >= 4 else 0.5}
        hold.on_step_begin(None, state, None, model=model)
        penalty.on_step_begin(None, state, None, model=model)
        held_steps.append(model.model.depth_controller.hold_full_depth)
        penalties.append(model.config.compute_penalty)
    assert held_steps == [True] * 4 + [False] * 4 and hold.released_at == 4
    assert penalties == pytest.approx([0.0] * 5 + [0.1, 0.2, 0.2])
    hold.on_train_end(None, state, None, model=model)
    assert model.model.depth_controller.hold_full_depth is False


def test_a_step_limit_releases_a_hold_whose_gate_is_not_reached():
    probe, model = _Probe(), _model()
    hold = DepthHoldCallback(probe, accuracy=0.9, max_steps=3)
    state = type("State", (), {"global_step": 0, "log_history": []})()
    hold.on_train_begin(None, state, None, model=model)
    held_steps = []
    for step in range(5):
        state.global_step = step
        probe.latest = {"probe/token_accuracy": 0.5}
        hold.on_step_begin(None, state, None, model=model)
        held_steps.append(model.model.depth_controller.hold_full_depth)
    assert held_steps == [True] * 3 + [False] * 2 and hold.released_at == 3
    only_steps = DepthHoldCallback(None, max_steps=2)
    state.global_step = 2
    only_steps.on_step_begin(None, state, None, model=model)
    assert only_steps.released_at == 2
    with pytest.raises(ValueError, match="accuracy gate, a step limit or both"):
        DepthHoldCallback(probe)
    with pytest.raises(ValueError, match="needs the DepthProbeCallback"):
        DepthHoldCallback(None, accuracy=0.5)


def test_a_hold_never_released_says_so_at_the_end(monkeypatch):
    import anira_study.callbacks as callbacks

    warnings = []
    monkeypatch.setattr(callbacks.logger, "warning", warnings.append)
    model = _model()
    state = type("State", (), {"global_step": 9, "log_history": [], "is_world_process_zero": True})()
    hold = DepthHoldCallback(_Probe(), accuracy=0.9)
    hold.on_train_begin(None, state, None, model=model)
    hold.on_train_end(None, state, None, model=model)
    assert len(warnings) == 1 and "never released" in warnings[0] and "untrained depth controller" in warnings[0]
    assert model.model.depth_controller.hold_full_depth is False


def test_a_resumed_run_keeps_its_release_step():
    model = _model()
    state = type("State", (), {"global_step": 50, "log_history": [{"loss": 1.0}, {"depth_hold/released_at": 30.0}]})()
    hold = DepthHoldCallback(_Probe(), accuracy=0.9)
    hold.on_train_begin(None, state, None, model=model)
    assert hold.released_at == 30 and model.model.depth_controller.hold_full_depth is False
    fresh = DepthHoldCallback(_Probe(), accuracy=0.9)
    fresh.on_train_begin(None, type("State", (), {"global_step": 0, "log_history": []})(), None, model=model)
    assert fresh.released_at is None and model.model.depth_controller.hold_full_depth is True


def test_train_holds_then_releases_and_logs_the_step(tmp_path):
    trainer = load_script("train").main(train_argv(tmp_path / "run", "--max_steps", "6", "--save_strategy", "no",
                                                   "--depth_hold_accuracy", "0.0", "--compute_penalty", "0.1"))
    history = trainer.state.log_history
    released = [entry["depth_hold/released_at"] for entry in history if "depth_hold/released_at" in entry]
    ramp = [entry["penalty/ramp_start"] for entry in history if "penalty/ramp_start" in entry]
    assert released == [2.0]  # the first probe (step 2) meets accuracy 0, the next step releases
    assert ramp == [2.0]  # the penalty, without a gate of its own, starts with the release
    assert trainer.model.model.depth_controller.hold_full_depth is False


@pytest.mark.parametrize("argv, message", [
    (["--depth_hold_accuracy", "1.5"], "--depth_hold_accuracy must lie in"),
    (["--depth_hold_steps", "-1"], "--depth_hold_steps must be >= 0"),
    (["--depth_hold_accuracy", "0.5", "--config_overrides", "depth_mode=fixed"], "fixed-depth model has no controller"),
])
def test_bad_hold_arguments_are_refused_by_name(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        load_script("train").main(train_argv(tmp_path / "bad", "--max_steps", "1", *argv))
