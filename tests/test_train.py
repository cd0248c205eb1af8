"""examples/train.py and anira_study (data, callbacks, trainer): collator, probe and penalty callbacks, saving, resuming, torchrun."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig, Trainer, TrainingArguments

from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
from anira_study.callbacks import ComputePenaltyCallback, DepthProbeCallback, TimeBudgetCallback
from anira_study.data import AnswerCollator, unwrap_model

from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = "hidden_size=32,intermediate_size=64,num_attention_heads=4,num_core_layers=1,max_depth=3,depth_init_bias=0.0"




def train_argv(output_dir, *extra, task="depo", mode="online") -> list[str]:
    return [
        "--model_name_or_path", str(ROOT / f"hub_configs/anira-{'o' if mode == 'online' else 'e'}-{task}"),
        "--from_scratch", "true", "--config_overrides", TINY, "--task", task, "--train_sizes", "1", "2", "--extrapolation_sizes", "3",
        "--task_params", '{"num_nodes": 4}', "--num_train", "128", "--num_validation", "16", "--num_test_per_size", "8",
        "--output_dir", str(output_dir), "--per_device_train_batch_size", "8", "--report_to", "none",
        "--probe_steps", "2", "--probe_per_size", "4", "--logging_steps", "1", "--use_cpu", "true",
        "--disable_tqdm", "true", *extra,
    ]


def test_collator_right_pads_and_keeps_labels_only_on_answers():
    rows = [{"input_ids": [1, 5, 6, 7], "labels": [-100, -100, 6, 7]}, {"input_ids": [1, 8], "labels": [-100, 8]}]
    batch = AnswerCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 7], [1, 8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 6, 7], [-100, 8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert AnswerCollator(0, pad_to_multiple_of=8)(rows)["input_ids"].shape == (2, 8)


class _Probe:
    def __init__(self):
        self.latest, self.trainer, self.events = {}, None, []

    def log_event(self, state, event, values):
        self.events.append({"event": event, "step": state.global_step, **values})


def test_penalty_is_zero_until_warmup_and_gate_then_ramps_linearly():
    probe = _Probe()
    schedule = ComputePenaltyCallback(target=0.2, warmup_steps=3, ramp_steps=4, gate_accuracy=0.8, probe=probe)
    model = torch.nn.Module()
    model.config = type("Config", (), {"compute_penalty": 0.2})()
    state = type("State", (), {"global_step": 0, "log_history": []})()
    seen = []
    for step in range(12):
        state.global_step = step
        probe.latest = {"probe/token_accuracy": 0.9 if step >= 5 else 0.1}
        schedule.on_step_begin(None, state, None, model=model)
        seen.append(model.config.compute_penalty)
    assert seen[:6] == [0.0] * 6  # warm-up over at 3, but the gate opens only at step 5
    assert seen[6:] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="gate_accuracy"):
        ComputePenaltyCallback(target=0.1, gate_accuracy=0.5)


def test_penalty_schedule_reaches_the_model_inside_a_ddp_style_wrapper():
    inner = torch.nn.Linear(2, 2)
    inner.config = type("Config", (), {"compute_penalty": 1.0})()
    wrapper = torch.nn.Module()
    wrapper.module = inner
    assert unwrap_model(wrapper) is inner
    state = type("State", (), {"global_step": 10, "log_history": []})()
    ComputePenaltyCallback(target=0.3, warmup_steps=0, ramp_steps=0).on_step_begin(None, state, None, model=wrapper)
    assert inner.config.compute_penalty == 0.3


def test_probe_callback_logs_through_the_trainer_and_to_a_json_file(tmp_path):
    tokenizer = load_tokenizer("depo")
    data = build_dataset_dict(TaskSpec(task="depo", train_sizes=[1, 2], extrapolation_sizes=[3], num_train=64,
                                       num_validation=8, num_test_per_size=4, task_params={"num_nodes": 4}), tokenizer)
    from transformers import AutoConfig, TrainerCallback

    config = AutoConfig.from_pretrained(ROOT / "hub_configs/anira-o-depo")
    config.update_from_string(TINY)
    model = AutoModelForCausalLM.from_config(config)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8, report_to="none",
                             use_cpu=True, save_strategy="no", disable_tqdm=True, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=data["train"].select_columns(["input_ids", "labels"]),
                      data_collator=AnswerCollator(tokenizer.pad_token_id))
    reported = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            reported.append(dict(logs))

    trainer.add_callback(Recorder())
    rows = data["validation"].to_list()
    DepthProbeCallback(rows, tokenizer, probe_steps=2, log_path=str(tmp_path / "probe.jsonl"), seen_sizes=[1, 2]).attach(trainer)
    trainer.train()
    probes = [logs for logs in reported if "probe/mean_depth" in logs]
    assert len(probes) == 2  # steps 2 and 4
    answer_keys = ("probe/content_accuracy", "probe/answer_exact", "probe/content_accuracy@1", "probe/answer_exact@2")
    for key in ("probe/compute_loss", "probe/token_accuracy", "probe/accuracy@1", "probe/depth@2", "probe/compute_penalty", *answer_keys):
        assert key in probes[-1]
    assert 1.0 <= probes[-1]["probe/depth@2"] <= 3.0
    # DEPO's answer has no structure symbols: content accuracy is token accuracy; one token: exact match is it too
    assert probes[-1]["probe/content_accuracy"] == probes[-1]["probe/token_accuracy"] == probes[-1]["probe/answer_exact"]
    lines = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert all(key in lines[-1] for key in answer_keys)
    assert any("probe/mean_depth" in entry for entry in trainer.state.log_history)


def test_time_budget_stops_training_and_records_that_it_fired():
    control = type("Control", (), {"should_training_stop": False, "should_log": False})()
    args = type("Args", (), {"device": torch.device("cpu")})()
    state = type("State", (), {"global_step": 7, "max_steps": 100})()
    budget = TimeBudgetCallback(minutes=0.0)
    budget.on_step_end(args, state, control)
    assert control.should_training_stop and budget.fired_at_step == 7


def test_the_probe_of_train_py_reads_the_validation_split_only(tmp_path, monkeypatch):
    import anira_study.trainer as trainer_module

    read = {}
    original = trainer_module.probe_rows

    def spy(data, per_size):
        rows = original(data, per_size)
        read["prompts"] = {row["prompt"] for row in rows}
        read["splits"] = {name: set(split["prompt"]) for name, split in data.items()}
        return rows

    monkeypatch.setattr(trainer_module, "probe_rows", spy)
    load_script("train").main(train_argv(tmp_path / "run", "--max_steps", "2", "--save_strategy", "no"))
    assert read["prompts"] and read["prompts"] <= read["splits"]["validation"]
    for name in ("test_seen", "test_extrapolation"):
        assert not read["prompts"] & read["splits"][name]


def test_config_overrides_of_width_or_heads_give_head_dim_its_new_value():
    from transformers import AutoConfig

    from anira_study.trainer import apply_config_overrides

    config = AutoConfig.from_pretrained(ROOT / "hub_configs/anira-o-mano")
    assert config.head_dim == 64  # the named config stores 256 / 4
    apply_config_overrides(config, "hidden_size=64,intermediate_size=128,num_attention_heads=4")
    assert config.head_dim == 16
    model = AutoModelForCausalLM.from_config(config)
    assert model.model.prelude[0].self_attn.q_proj.weight.shape == (64, 64)
    apply_config_overrides(config, "num_attention_heads=2,head_dim=8")
    assert config.head_dim == 8 and config.num_key_value_heads == 2  # an explicit head_dim wins; still ungrouped
    apply_config_overrides(config, "max_depth=5")
    assert config.head_dim == 8  # other overrides leave it alone


def test_curriculum_draws_unlocked_sizes_only_and_unlocks_on_validation_accuracy():
    import datasets

    from anira_study.callbacks import PROBE_PREFIX
    from anira_study.curriculum import ComplexityCurriculum, CurriculumCallback

    rows = datasets.Dataset.from_dict({"complexity": [1, 2, 3, 1, 2, 3], "input_ids": [[i] for i in range(6)]})
    curriculum = ComplexityCurriculum(rows, [1, 2, 3])
    assert {curriculum[i]["complexity"] for i in range(len(curriculum))} == {1}
    probe = _Probe()
    probe.last_step = 10
    probe.latest = {f"{PROBE_PREFIX}/accuracy@1": 0.5}
    callback = CurriculumCallback(curriculum, probe, accuracy=0.8)
    state = type("State", (), {"global_step": 10, "log_history": []})()
    callback.on_step_end(None, state, None)
    assert curriculum.unlocked_sizes == [1]
    probe.latest = {f"{PROBE_PREFIX}/accuracy@1": 0.9, f"{PROBE_PREFIX}/accuracy@2": 0.9}
    state.global_step = probe.last_step = 20
    callback.on_step_end(None, state, None)
    assert curriculum.unlocked_sizes == [1, 2]  # one size per probe, even though 2 looks learned too
    assert {curriculum[i]["complexity"] for i in range(len(curriculum))} == {1, 2}
    # the DataLoader's batched fetch gives the rows one by one indexing gives, in the batch's order
    batch = [5, 0, 3, 3, 2]
    assert curriculum.__getitems__(batch) == [curriculum[i] for i in batch]
    assert [row["complexity"] for row in curriculum.__getitems__(batch)] == [2, 1, 2, 2, 1]
    columns = type("Columns", (), {"__len__": lambda self: len(rows), "__getitem__": lambda self, key: rows[key]})()
    plain = ComplexityCurriculum(columns, [1, 2, 3], unlocked=2)  # a dataset without a batched read: row by row
    assert not hasattr(columns, "__getitems__") and plain.__getitems__(batch) == curriculum.__getitems__(batch)


def test_probe_reports_teacher_forced_exact_match_and_content_accuracy_per_size(monkeypatch):
    """CLRS answers right in their layout only: high token accuracy, no content, no whole answer."""
    import anira_study.callbacks as callbacks

    rows = [{"task": "topological_sort", "complexity": 2, "answer": "[ 7 9 ] , topo_head : 7"},  # content at 1, 2, 7
            {"task": "topological_sort", "complexity": 2, "answer": "[ 9 9 ] , topo_head : 7"},
            {"task": "topological_sort", "complexity": 3, "answer": "[ 1 2 2 ] , topo_head : 1"}]  # content at 1, 2, 3, 8
    correct = [[True, False, False, True, True, True, True, False],  # the layout only
               [True] * 8,
               [True, True, False, True, True, True, True, True, True]]  # one pointer wrong
    records = [{"complexity": row["complexity"], "token_correct": c, "answer_correct": all(c), "depths": [2.0] * len(c),
                "all_depths_sum": 2.0 * len(c), "all_depths_count": len(c), "compute_loss": 0.0} for row, c in zip(rows, correct)]
    monkeypatch.setattr(callbacks, "answer_records", lambda model, probe_rows, tokenizer, batch_size: records)
    model = torch.nn.Module()
    model.config = type("Config", (), {"compute_penalty": 0.0})()
    metrics = DepthProbeCallback(rows, tokenizer=None, seen_sizes=[2]).probe(model)
    assert metrics["probe/token_accuracy"] == pytest.approx(13 / 16)  # training sizes only: size 2
    assert metrics["probe/content_accuracy"] == pytest.approx(3 / 6)
    assert metrics["probe/answer_exact"] == pytest.approx(1 / 2)
    assert metrics["probe/accuracy@2"] == pytest.approx(13 / 16) and metrics["probe/accuracy@3"] == pytest.approx(8 / 9)
    assert metrics["probe/content_accuracy@2"] == pytest.approx(3 / 6) and metrics["probe/content_accuracy@3"] == pytest.approx(3 / 4)
    assert metrics["probe/answer_exact@2"] == pytest.approx(1 / 2) and metrics["probe/answer_exact@3"] == 0.0


def test_curriculum_on_answer_exact_waits_for_whole_answers_and_logs_each_unlock_to_the_probe_log(tmp_path):
    import datasets

    from anira_study.analysis import read_probe_events, read_probe_log, training_phases
    from anira_study.arguments import ScheduleArguments
    from anira_study.arguments import CURRICULUM_METRICS
    from anira_study.curriculum import SIZE_METRIC_KEYS, ComplexityCurriculum, CurriculumCallback

    assert set(SIZE_METRIC_KEYS) == set(CURRICULUM_METRICS)  # every name the flag accepts, the callback reads
    log = tmp_path / "probe_log.jsonl"
    rows = datasets.Dataset.from_dict({"complexity": [1, 2, 3], "input_ids": [[0], [1], [2]]})
    curriculum, by_tokens = ComplexityCurriculum(rows, [1, 2, 3]), ComplexityCurriculum(rows, [1, 2, 3])
    probe = DepthProbeCallback([], tokenizer=None, log_path=str(log))
    callback = CurriculumCallback(curriculum, probe, accuracy=0.8, metric="answer_exact")
    default = CurriculumCallback(by_tokens, probe, accuracy=0.8)
    assert default.metric == ScheduleArguments().curriculum_metric == "token_accuracy"  # today's rule stays the default
    state = type("State", (), {"global_step": 10, "log_history": [], "is_world_process_zero": True})()
    for step, token_accuracy, exact in [(10, 0.95, 0.4), (20, 0.97, 0.85)]:
        state.global_step = probe.last_step = step
        probe.latest = {"probe/token_accuracy": token_accuracy, "probe/answer_depth": 2.0,
                        "probe/accuracy@1": token_accuracy, "probe/answer_exact@1": exact}
        with open(log, "a") as handle:  # what the probe writes before the curriculum reads it
            handle.write(json.dumps({"step": step, **probe.latest}) + "\n")
        callback.on_step_end(None, state, None)
        default.on_step_end(None, state, None)
        if step == 10:
            assert by_tokens.unlocked_sizes == [1, 2] and curriculum.unlocked_sizes == [1]  # 0.95 per token, 0.4 whole answers
    assert curriculum.unlocked_sizes == [1, 2]
    unlocks = read_probe_events(log, "curriculum_unlock")
    assert [(e["step"], e["unlocked_size"], e["metric"]) for e in unlocks] == [(10, 2, "token_accuracy"), (20, 2, "answer_exact")]
    assert unlocks[1]["threshold"] == 0.8 and unlocks[1]["values"] == {"probe/answer_exact@1": 0.85}
    # the readers of the log see the probe records only, even where an event shares their step
    records = read_probe_log(log)
    assert [r["step"] for r in records] == [10, 20] and all("probe/token_accuracy" in r for r in records)
    assert training_phases(records)["final_accuracy"] == 0.97
    with pytest.raises(ValueError, match="curriculum metric must be one of"):
        CurriculumCallback(curriculum, probe, accuracy=0.8, metric="exact_match")


def test_train_script_passes_the_curriculum_metric_and_its_unlocks_reach_the_probe_log(tmp_path):
    from anira_study.analysis import read_probe_events, read_probe_log

    output_dir = tmp_path / "run"
    trainer = load_script("train").main(train_argv(output_dir, "--max_steps", "2", "--save_strategy", "no", "--num_proc", "1",
                                                   "--curriculum_accuracy", "0.0", "--curriculum_metric", "answer_exact"))
    (unlock,) = read_probe_events(output_dir / "probe_log.jsonl")
    assert (unlock["event"], unlock["step"], unlock["unlocked_size"], unlock["metric"]) == ("curriculum_unlock", 2, 2, "answer_exact")
    assert list(unlock["values"]) == ["probe/answer_exact@1"]
    assert [r["step"] for r in read_probe_log(output_dir / "probe_log.jsonl")] == [2]
    assert any(entry.get("curriculum/unlocked_size") == 2.0 for entry in trainer.state.log_history)


def test_train_script_saves_a_folder_that_loads_with_from_pretrained(tmp_path):
    output_dir = tmp_path / "run"
    train = load_script("train")
    train.main(train_argv(output_dir, "--max_steps", "4", "--save_strategy", "no",
                          "--compute_penalty", "0.1", "--penalty_warmup_steps", "1", "--penalty_ramp_steps", "2"))
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md",
                 "anira_data.json", "probe_log.jsonl", "train_rank0.json"):
        assert (output_dir / name).exists(), name
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert model.config.depth_mode == "online" and model.config.hidden_size == 32
    assert model.config.compute_penalty == 0.1
    assert GenerationConfig.from_pretrained(output_dir).eos_token_id == load_tokenizer("depo").eos_token_id
    card = (output_dir / "README.md").read_text()
    assert card.startswith("---\n") and "depth-mode-online" in card and "examples/evaluate_models.py" in card
    probes = [json.loads(line) for line in (output_dir / "probe_log.jsonl").read_text().splitlines()]
    assert [p["step"] for p in probes] == [2, 4]
    assert probes[-1]["probe/compute_penalty"] > 0.0  # the ramp started after the 1-step warm-up


def test_train_resumes_from_its_last_checkpoint(tmp_path):
    output_dir = tmp_path / "run"
    train = load_script("train")
    train.main(train_argv(output_dir, "--max_steps", "4", "--save_steps", "2"))
    assert (output_dir / "checkpoint-4").exists()
    trainer = train.main(train_argv(output_dir, "--max_steps", "6", "--save_steps", "2", "--resume_from_checkpoint", "last"))
    assert trainer.state.global_step == 6
    steps = [entry["step"] for entry in trainer.state.log_history if "loss" in entry]
    assert steps == [1, 2, 3, 4, 5, 6]  # the history of the first run carried over, then steps 5 and 6


def documented_cpu_launcher() -> list[str]:
    """The multi-process CPU command of docs/training.md up to its `...` (the training arguments)."""
    import shlex

    lines = (ROOT / "docs/training.md").read_text().splitlines()
    tokens = shlex.split(next(line for line in lines if line.startswith("torchrun") and "CPU" in line), comments=True)
    return tokens[:tokens.index("...")]


def test_torchrun_on_cpu_trains_one_model_on_the_union_of_the_ranks_batches(tmp_path):
    """The CPU line of docs/training.md, `torchrun --nproc_per_node 2 examples/train.py ...` naming no device: the
    two ranks train one data-parallel model. SGD at a constant rate without clipping makes the result linear in the
    gradient: after 3 steps of 2 x 8 rows both ranks hold the same parameters, equal to those of one process
    trained on 16-row batches (the union of the ranks' batches: one sampler order), with the same logged loss.
    Ranks training each its own model (on 8-row batches), or a loss scaled by the world size, end elsewhere."""
    from safetensors.torch import load_file

    sgd = ("--max_steps", "3", "--save_strategy", "no", "--optim", "sgd", "--learning_rate", "0.1",
           "--lr_scheduler_type", "constant", "--max_grad_norm", "0")
    argv = train_argv(tmp_path / "ddp", *sgd)
    del argv[argv.index("--use_cpu"):argv.index("--use_cpu") + 2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("ACCELERATE_USE_CPU", None)
    with socket.socket() as probe:  # a free port, so parallel test runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    launcher = documented_cpu_launcher()
    assert launcher == ["torchrun", "--nproc_per_node", "2", "examples/train.py"]
    command = [sys.executable, "-m", "torch.distributed.run", "--master_port", port, *launcher[1:], *argv]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    load_script("train").main(train_argv(tmp_path / "one", *sgd, "--per_device_train_batch_size", "16"))

    together, alone = load_file(tmp_path / "ddp/model.safetensors"), load_file(tmp_path / "one/model.safetensors")
    assert together.keys() == alone.keys()
    for name, weight in alone.items():
        torch.testing.assert_close(together[name], weight, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    ranks = [json.loads((tmp_path / f"ddp/train_rank{rank}.json").read_text()) for rank in (0, 1)]
    one = json.loads((tmp_path / "one/train_rank0.json").read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["global_step"] == 3 for r in ranks)
    assert ranks[0]["parameter_sha256"] == ranks[1]["parameter_sha256"]
    assert ranks[0]["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "ddp").config.depth_mode == "online"


def test_launched_processes_on_cpu_form_one_group_and_a_lone_launched_process_is_refused(monkeypatch):
    from types import SimpleNamespace

    import accelerate.utils.imports as accelerate_imports
    from transformers.training_args import ParallelMode

    from anira_study.trainer import check_launched_processes, use_cpu_for_launched_processes

    monkeypatch.setattr(accelerate_imports, "get_torch_accelerator_backend", lambda *args, **kwargs: (None, None))
    monkeypatch.setenv("ACCELERATE_USE_CPU", "false")  # restored after the test
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    use_cpu_for_launched_processes()
    assert os.environ["ACCELERATE_USE_CPU"] == "false"  # one process: the device flags decide
    monkeypatch.setenv("WORLD_SIZE", "2")
    use_cpu_for_launched_processes()
    assert os.environ["ACCELERATE_USE_CPU"] == "true"  # torchrun on CPU: accelerate then forms a gloo group
    check_launched_processes(SimpleNamespace(world_size=2, parallel_mode=ParallelMode.DISTRIBUTED))
    with pytest.raises(ValueError, match="started 2 processes but the Trainer sees 1 .not_parallel."):
        check_launched_processes(SimpleNamespace(world_size=1, parallel_mode=ParallelMode.NOT_PARALLEL))
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what `accelerate launch --cpu --num_processes 2` leaves
    with pytest.raises(ValueError, match="started this process alone.*torchrun --nproc_per_node N"):
        check_launched_processes(SimpleNamespace(world_size=1, parallel_mode=ParallelMode.NOT_PARALLEL))


def test_parameter_digest_changes_with_any_parameter_and_sees_through_a_wrapper(make_model):
    from anira_study.trainer import parameter_digest

    model = make_model()
    wrapper = torch.nn.Module()
    wrapper.module = model
    before = parameter_digest(model)
    assert parameter_digest(wrapper) == before and len(before) == 64
    with torch.no_grad():
        model.model.core[0].mlp.down_proj.weight[0, 0] += 1e-6
    assert parameter_digest(model) != before


@pytest.mark.parametrize("recurrence", ["fast", "dense"])
def test_train_runs_the_chosen_recurrence(tmp_path, monkeypatch, recurrence):
    import modeling_anira.modeling_anira as modeling

    calls = []
    real = modeling.fast_recur
    monkeypatch.setattr(modeling, "fast_recur", lambda *args: calls.append(1) or real(*args))
    trainer = load_script("train").main(train_argv(tmp_path / recurrence, "--max_steps", "2", "--save_strategy", "no",
                                                  "--recurrence", recurrence))
    assert trainer.model.model.recurrence == recurrence
    assert bool(calls) == (recurrence == "fast")
