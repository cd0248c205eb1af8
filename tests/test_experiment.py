"""anira_study.experiment (the main job, examples/experiment.py): determinism, what it reports, what it reads."""

import json

from anira_study.experiment import ExperimentArguments, run_experiment

TINY = dict(
    task="depo", task_params='{"num_nodes": 5, "num_queries": 2, "supervise_all_queries": true, "edge_format": "token"}',
    train_sizes=[1, 2], extrapolation_sizes=[3], num_train=200, num_validation=6, num_test_per_size=5,
    model_overrides="hidden_size=32,intermediate_size=64,num_attention_heads=4,num_core_layers=1,max_depth=3",
    max_steps=6, per_device_train_batch_size=8, warmup_steps=2, probe_steps=3, probe_per_size=4,
    penalty_gate_accuracy=None, curriculum_accuracy=0.5,
)


def test_same_seed_gives_the_same_table_in_parallel_processes_and_in_one(tmp_path):
    first = run_experiment(ExperimentArguments(output_dir=str(tmp_path / "a"), **TINY))
    second = run_experiment(ExperimentArguments(output_dir=str(tmp_path / "b"), parallel=False, **TINY))
    assert first["table"] == second["table"]
    assert first["findings"] == second["findings"]
    for name in ("ANIRA-E", "ANIRA-O"):
        assert first["models"][name]["steps"] == 6 and first["models"][name]["time_guard_fired_at_step"] is None
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["table"] == first["table"]
    for name in ("complexity.png", "training_dynamics.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    # what every number rests on: distinct prompts per size, intervals, rho over items
    seen = report["reports"]["ANIRA-O"]["test_seen"]
    assert seen["items"] == seen["distinct_prompts"] == 10
    for values in seen["per_complexity"].values():
        assert values["items"] == 5 and set(values["intervals"]) >= {"generated_accuracy", "mean_depth", "token_accuracy"}
    assert len(seen["spearman_interval"]) == 2
    assert report["data"]["distinct_prompts"]["test_seen"] == {"1": 5, "2": 5}
    # the parameter count printed is the model's (head_dim follows the overridden width: 4 heads of 8)
    assert report["models"]["ANIRA-O"]["parameters"] < 60_000
    assert any(line.startswith("F1 ANIRA-E") for line in report["findings"])


def test_the_wall_time_guard_is_reported_when_it_fires(tmp_path):
    arguments = ExperimentArguments(output_dir=str(tmp_path), parallel=False, max_train_minutes=0.001, **(TINY | {"max_steps": 10_000}))
    summary = run_experiment(arguments)
    fired = [line for line in summary["findings"] if line.startswith("NOTE")]
    assert len(fired) == 2 and "wall-time guard" in fired[0]
    assert all(model["steps"] < 10_000 for model in summary["models"].values())
