"""`--compile_model` (anira_study.trainer.compile_model): the whole training forward of a fixed-depth model, of
ANIRA-E with the exact router gradient and of ANIRA-O (every halting objective, tokens at different depths, iterations
over no rows) compiled as one graph gives eager's losses, depths and gradients (float32 and float64, within rounding),
packed batches of other rows and lengths reuse that graph, and ANIRA-E's router_gradient="next" is refused with a
ValueError that names the problem. `ANIRA_TEST_DEVICE=cuda` runs the comparisons with eager on a GPU (the compiled
forward is measured on CPU only so far)."""

import os
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from anira_study.arguments import ModelArguments
from anira_study.data import PackedAnswerCollator
from anira_study.trainer import compile_model, load_model_and_tokenizer

DEVICE = torch.device(os.environ.get("ANIRA_TEST_DEVICE", "cpu"))
EXACT = dict(depth_mode="early", router_gradient="full", router_sampling="gumbel", iteration_loss_weight=0.5,
             compute_penalty=0.01)


def packed_batch(seed: int, samples: int, longest: int) -> dict:
    """Packed rows (of 2 * `longest` tokens) of `samples` answers of 3..`longest` tokens, the first half of each
    unsupervised."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(samples):
        n = int(torch.randint(3, longest + 1, (1,), generator=generator))
        ids = torch.randint(3, 40, (n,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2:]})
    return PackedAnswerCollator(pad_token_id=0, pack_length=2 * longest)(rows)


def on_device(batch: dict) -> dict:
    return {name: value.to(DEVICE) for name, value in batch.items()}


def step(model, batch: dict, seed: int, **kwargs):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the Gumbel noise: compiled, drawn by eager's generator (fallback_random)
    out = model(**on_device(batch), **kwargs)
    out.loss.backward()
    terms = {name: getattr(out, name).detach() for name in ("loss", "lm_loss", "iteration_loss", "compute_loss", "depths")
             if getattr(out, name) is not None}
    return terms, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def online_model(dtype, halting_bias: float | None = None, **config):
    """A tiny model (tiny_model: large random controller weights); `halting_bias` set, the halting head's bias."""
    model = tiny_model(dtype=dtype, recurrence="fast", **config).to(DEVICE).train()
    if halting_bias is not None:
        torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, halting_bias)
    return model


def check_equal_to_eager(dtype, rtol, atol, batches, items: bool, halting_bias: float | None = None, **config):
    """`items`: every step passes the Trainer's `num_items_in_batch` (as the Trainer does, on every step or none)."""
    eager = online_model(dtype, halting_bias, **config)
    compiled = compile_model(online_model(dtype, halting_bias, **config))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    for index, batch in enumerate(batches):
        for model in (eager, compiled):  # a penalty schedule's ramp: a new weight every step, and no recompilation
            model.config.compute_penalty = 0.01 * index
        kwargs = {"num_items_in_batch": torch.tensor(17 + index, device=DEVICE)} if items else {}
        terms, grads = step(eager, batch, index, **kwargs)
        compiled_terms, compiled_grads = step(compiled, batch, index, **kwargs)
        assert compiled_terms.keys() == terms.keys()
        for name, value in terms.items():
            torch.testing.assert_close(compiled_terms[name], value, rtol=rtol, atol=atol,
                                       msg=lambda message, name=name: f"{name}: {message}")
        assert compiled_grads.keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(compiled_grads[name], grad, rtol=rtol, atol=atol,
                                       msg=lambda message, name=name: f"{name}: {message}")
    assert counters["stats"]["unique_graphs"] == 1, "one graph for every batch: no graph break, no recompilation"
    assert not counters["graph_break"]
    frames = counters["frames"]["total"]
    with torch.no_grad():
        ids = batches[0]["input_ids"][:2].to(DEVICE)
        assert torch.equal(compiled.eval()(input_ids=ids).logits, eager.eval()(input_ids=ids).logits)
    assert counters["frames"]["total"] == frames, "evaluation should run the eager forward"


BATCHES = [packed_batch(0, 6, 9), packed_batch(1, 9, 12), packed_batch(2, 5, 7)]


def test_batches_differ_in_rows_and_lengths():
    assert len({tuple(b["input_ids"].shape) for b in BATCHES}) == len(BATCHES)
    assert all((b["position_ids"] == 0).sum() > b["input_ids"].shape[0] for b in BATCHES), "rows hold several samples"


@pytest.mark.parametrize("config", [dict(depth_mode="fixed", max_depth=3), EXACT], ids=["fixed", "early-full"])
def test_compiled_model_trains_as_eager_float32(config):
    check_equal_to_eager(torch.float32, 2e-5, 2e-6, BATCHES, True, **config)


@pytest.mark.slow
@pytest.mark.parametrize("config", [dict(depth_mode="fixed", max_depth=3, iteration_loss_weight=0.5), EXACT],
                         ids=["fixed", "early-full"])
def test_compiled_model_trains_as_eager_float64(config):
    """transformers' LM loss runs in float32 (`logits.float()`) whatever the model's dtype, and the compiled graph
    rounds it otherwise than eager's kernels: a float64 model agrees to float32's rounding, not float64's."""
    check_equal_to_eager(torch.float64, 1e-6, 1e-8, BATCHES, False, **config)


ONLINE = dict(depth_mode="online", max_depth=5, iteration_loss_weight=0.5, compute_penalty=0.01)


def iterations_computed(halting_bias, **config) -> list[list[int]]:
    """Per batch, how many tokens the eager fast path computes at each iteration (training: the running tokens and
    those that halted after the previous one)."""
    counts = []
    for batch in BATCHES:
        depths = online_model(torch.float32, halting_bias, **config)(**on_device(batch)).depths.cpu()
        depths = depths[depths > 0]
        counts.append([int((depths >= t - 1).sum()) if t > 1 else int(depths.numel())
                       for t in range(1, config["max_depth"] + 1)])
    return counts


@pytest.mark.parametrize("halting_bias", [None, 50.0], ids=["mixed-depths", "all-halt-at-1"])
def test_compiled_online_model_trains_as_eager_float32(halting_bias):
    """ANIRA-O's traced loop runs every iteration over the tokens it computes (a graph symbol): tokens at depths 1
    and 5 in one batch, and a model whose tokens all halt after iteration 1 (iterations 3-5 over no rows)."""
    computed = iterations_computed(halting_bias, **ONLINE)
    if halting_bias is None:
        assert all(0 < c[-1] < c[0] for c in computed), computed
    else:
        assert all(c[2:] == [0, 0, 0] for c in computed), computed
    check_equal_to_eager(torch.float32, 2e-5, 2e-6, BATCHES, True, halting_bias, **ONLINE)


@pytest.mark.parametrize("config", [ONLINE, pytest.param(EXACT, marks=pytest.mark.slow)], ids=["online", "early-full"])
def test_compiled_adaptive_models_with_the_papers_objective_train_as_eager(config):
    """The study's anira-e-paper and anira-o-paper: no iteration loss, so no readouts in the graph."""
    check_equal_to_eager(torch.float32, 2e-5, 2e-6, BATCHES, True, **{**config, "iteration_loss_weight": 0.0})


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["act", "pondernet"])
def test_compiled_online_objectives_train_as_eager(objective):
    check_equal_to_eager(torch.float32, 2e-5, 2e-6, BATCHES, True, halting_objective=objective, **ONLINE)


@pytest.mark.slow
def test_compiled_online_model_trains_as_eager_float64():
    check_equal_to_eager(torch.float64, 1e-6, 1e-8, BATCHES, False, **ONLINE)


def test_a_data_dependent_loop_is_refused():
    with pytest.raises(ValueError, match="router_gradient='next'"):
        compile_model(tiny_model(depth_mode="early", router_gradient="next"))


def test_held_early_model_and_evaluation_run_eager():
    model = compile_model(tiny_model(dtype=torch.float32, recurrence="fast", **EXACT).train())
    model.model.depth_controller.hold_full_depth = True
    counters = torch._dynamo.utils.counters
    frames = counters["frames"]["total"]
    step(model, BATCHES[0], 0)
    assert counters["frames"]["total"] == frames


def test_the_trainer_keeps_the_batch_columns(tmp_path):
    """The Trainer drops the dataset columns its model's forward does not name (`remove_unused_columns`): the compiled
    forward keeps the eager one's signature, so its batches still hold the input ids and labels."""
    import inspect

    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = compile_model(tiny_model(dtype=torch.float32, recurrence="fast", **ONLINE).train())
    assert inspect.signature(model.forward) == inspect.signature(tiny_model(**ONLINE).forward)
    rows = Dataset.from_list([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}])
    arguments = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to="none", use_cpu=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=rows, data_collator=PackedAnswerCollator(pad_token_id=0))
    batch = next(iter(trainer.get_train_dataloader()))
    assert int((batch["labels"] != -100).sum()) == 3


@pytest.mark.slow
def test_train_script_trains_with_the_compiled_forward(tmp_path):
    from conftest import load_script
    from test_train import train_argv

    counters = torch._dynamo.utils.counters
    counters.clear()
    trainer = load_script("train").main(train_argv(tmp_path / "run", "--max_steps", "3", "--save_strategy", "no",
                                                   "--compile_model", "true"))
    assert trainer.state.global_step == 3
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [1, 2, 3]
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]


def test_the_flag_compiles_and_refuses_with_compile_layers():
    args = dict(model_name_or_path=str(Path(__file__).resolve().parents[1] / "hub_configs" / "anira-e-depo"), from_scratch=True)
    model, _ = load_model_and_tokenizer(ModelArguments(**args, compile_model=True), "depo")
    assert "forward" in vars(model)
    plain, _ = load_model_and_tokenizer(ModelArguments(**args), "depo")
    assert "forward" not in vars(plain)
    with pytest.raises(ValueError, match="choose one"):
        load_model_and_tokenizer(ModelArguments(**args, compile_model=True, compile_layers=True), "depo")
    args["model_name_or_path"] = args["model_name_or_path"].replace("anira-e-depo", "anira-o-depo")
    online, _ = load_model_and_tokenizer(ModelArguments(**args, compile_model=True), "depo")
    assert "forward" in vars(online)
