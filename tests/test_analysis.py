"""anira_study.analysis, anira_study.figures and examples/analyze.py: feature importance, training dynamics, figures."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from anira_study.analysis import (FEATURE_GROUPS, depth_feature_importance, read_probe_events, read_probe_log, token_table,
                                  training_phases)
from anira_study.figures import plot_complexity, plot_training_dynamics

from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"static": ["num_nodes", "out_degree"], "algorithmic_state": ["frontier_size", "newly_enabled"]}




def synthetic_records(depth_of, samples: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for _ in range(samples):
        length = rng.randint(1, 4)
        record = {name: [rng.randint(0, 4) for _ in range(length)] for name in ("num_nodes", "out_degree", "frontier_size", "newly_enabled")}
        record["depths"] = [depth_of({k: record[k][i] for k in record}) for i in range(length)]
        records.append(record)
    return records


def test_depth_driven_by_static_features_gets_the_static_share():
    result = depth_feature_importance(synthetic_records(lambda f: 1 + f["num_nodes"] + (f["out_degree"] > 2)), GROUPS)
    assert result["r2_full"] == pytest.approx(1.0)
    assert result["share"]["static"] == pytest.approx(1.0, abs=0.02)
    assert abs(result["share"]["algorithmic_state"]) < 0.02
    assert sum(result["share"].values()) == pytest.approx(result["r2_full"])


def test_depth_driven_by_algorithmic_state_gets_the_state_share_and_categorical_encoding_fits_nonlinear_maps():
    # a non-monotone map of frontier size: a linear fit on the raw value would miss it, one-hot does not
    result = depth_feature_importance(synthetic_records(lambda f: [1, 5, 2, 6, 3][f["frontier_size"]]), GROUPS)
    assert result["share"]["algorithmic_state"] == pytest.approx(1.0, abs=0.02)
    assert result["r2_feature"]["frontier_size"] == pytest.approx(1.0)


def test_constant_depth_has_nothing_to_explain():
    result = depth_feature_importance(synthetic_records(lambda f: 3), GROUPS)
    assert result["tokens"] > 0 and result["depth_variance"] == 0.0
    assert all(value != value for value in result["share"].values())  # NaN


def test_structure_symbols_marked_minus_one_are_left_out():
    records = [{"size": [5, -1, 5], "node_degree": [2, -1, 3], "dfs_depth": [0, -1, 1], "depths": [2, 9, 3]}]
    X, y = token_table(records, ["size", "node_degree", "dfs_depth"])
    assert X.tolist() == [[5, 2, 0], [5, 3, 1]] and y.tolist() == [2.0, 3.0]
    assert set(FEATURE_GROUPS) == {"brevo", "topological_sort"}


def probe_log(tmp_path) -> Path:
    lines = []
    for step, (acc, depth) in enumerate([(0.2, 4.0), (0.6, 4.0), (0.95, 3.9), (1.0, 3.0), (1.0, 2.5)], start=1):
        lines.append({"step": 10 * step, "probe/token_accuracy": acc, "probe/answer_depth": depth, "probe/compute_penalty": 0.01 * step,
                      "probe/accuracy@1": min(1.0, acc + 0.2), "probe/accuracy@2": acc, "probe/depth@1": depth - 0.5, "probe/depth@2": depth})
    lines.append(dict(lines[-1], **{"probe/answer_depth": 2.0}))  # a resumed run repeats step 50: the last record wins
    path = tmp_path / "probe_log.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_training_phases_find_the_learning_phase_then_the_compute_reduction(tmp_path):
    records = read_probe_log(probe_log(tmp_path))
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50]
    phases = training_phases(records)
    assert phases["learned_step"] == 30 and phases["depth_when_learned"] == 3.9
    assert phases["final_depth"] == 2.0 and phases["depth_reduction"] == pytest.approx(1.9)


def test_a_resumed_runs_log_keeps_the_segment_it_resumed_from(tmp_path):
    """An interrupted process logged steps 30-50 and an unlock at 40 past its last checkpoint (20); the resumed one
    logged 30-50 again and unlocked at 50: the readers give the resumed segment's probes and its unlock only."""
    def probe(step, depth):
        return {"step": step, "probe/token_accuracy": 0.5, "probe/answer_depth": depth}

    lines = [probe(10, 6.0), probe(20, 5.0), probe(30, 4.0), probe(40, 4.0),
             {"event": "curriculum_unlock", "step": 40, "unlocked_size": 2}, probe(50, 4.0),
             probe(30, 3.0), probe(40, 3.0), probe(50, 3.0), {"event": "curriculum_unlock", "step": 50, "unlocked_size": 2}]
    path = tmp_path / "probe_log.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert [(r["step"], r["probe/answer_depth"]) for r in read_probe_log(path)] == [(10, 6.0), (20, 5.0), (30, 3.0), (40, 3.0), (50, 3.0)]
    assert [(e["step"], e["unlocked_size"]) for e in read_probe_events(path)] == [(50, 2)]
    assert read_probe_events(path, "penalty_on") == []


def test_figures_are_written(tmp_path):
    records = read_probe_log(probe_log(tmp_path))
    assert plot_training_dynamics({"ANIRA-E": records, "ANIRA-O": records}, tmp_path / "dyn.png").stat().st_size > 0
    per = {"per_complexity": {1: {"generated_accuracy": 1.0, "token_accuracy": 1.0, "mean_depth": 2.0}}}
    report = {"test_seen": per, "test_extrapolation": {"per_complexity": {3: {"generated_accuracy": 0.1, "token_accuracy": 0.2, "mean_depth": 3.0}}},
              "all": {"spearman": 1.0}}
    assert plot_complexity({"ANIRA-E": report, "ANIRA-O": report}, [1, 2], tmp_path / "c.png").stat().st_size > 0


def test_analyze_script_runs_dynamics_and_importance_on_a_trained_brevo_model(tmp_path):
    output_dir = tmp_path / "anira-e-brevo"
    load_script("train").main([
        "--model_name_or_path", str(ROOT / "hub_configs/anira-e-brevo"), "--from_scratch", "true", "--config_overrides",
        "hidden_size=32,intermediate_size=64,num_core_layers=1,max_depth=3,depth_init_bias=0.0",
        "--task", "brevo", "--train_sizes", "3", "4", "--extrapolation_sizes", "5", "--num_train", "32", "--num_validation", "4",
        "--num_test_per_size", "6", "--output_dir", str(output_dir), "--per_device_train_batch_size", "8", "--max_steps", "2",
        "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--probe_steps", "1", "--probe_per_size", "2",
        "--disable_tqdm", "true"])
    analyze = load_script("analyze")
    phases = analyze.main(["dynamics", "--models", str(output_dir), "--output_dir", str(tmp_path / "out")])
    assert (tmp_path / "out" / "training_dynamics.png").exists() and "learned_step" in phases["anira-e-brevo"]
    results = analyze.main(["importance", "--models", str(output_dir), "--output_dir", str(tmp_path / "out")])
    result = results["anira-e-brevo"]
    assert result["tokens"] > 0 and set(result["r2_alone"]) == {"static", "execution_state"}
    assert result["inside_prompts"]["within_prompt"] and result["inside_prompts"]["tokens"] == result["tokens"]
    assert json.loads((tmp_path / "out" / "feature_importance.json").read_text())["anira-e-brevo"]["tokens"] == result["tokens"]


def test_node_depth_in_the_dag_counts_as_static_and_shares_carry_bootstrap_intervals():
    assert "node_depth" in FEATURE_GROUPS["brevo"]["static"]
    for groups in FEATURE_GROUPS.values():
        assert set(groups) == {"static", "execution_state"} and not set(groups["static"]) & set(groups["execution_state"])
    result = depth_feature_importance(synthetic_records(lambda f: 1 + f["num_nodes"] + (f["frontier_size"] > 2)), GROUPS, resamples=50)
    for group in ("static", "algorithmic_state"):
        low, high = result["share_interval"][group]
        assert low <= result["share"][group] <= high and 0 < high - low < 0.2
    assert result["items"] == 300


def test_share_interval_holds_the_central_95_percent_of_the_bootstrap_draws(monkeypatch):
    import anira_study.analysis as analysis

    calls = []
    real = analysis._shares
    monkeypatch.setattr(analysis, "_shares", lambda *args: calls.append(real(*args)) or calls[-1])
    result = depth_feature_importance(synthetic_records(lambda f: 1 + f["num_nodes"] + (f["frontier_size"] > 2),
                                                        samples=120), GROUPS, resamples=80)
    assert len(calls) == 81  # the estimate on all items, then one call per bootstrap draw
    for group in GROUPS:
        draws = np.array([shares[group] for shares, _ in calls[1:]])
        low, high = result["share_interval"][group]
        assert (low, high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
        assert (draws < low).mean() <= 0.04 and (draws > high).mean() <= 0.04  # 2.5 % on each side (2 of 80)
        assert (draws < low).mean() >= 0.01 and (draws > high).mean() >= 0.01


def test_within_prompt_shares_ignore_what_is_constant_in_a_prompt():
    # depth = graph size (constant within a prompt) + a frontier-size effect that moves from token to token:
    # over all tokens graph size dominates; within prompts only the frontier size is left to explain
    records = synthetic_records(lambda f: 0)
    for record in records:
        size = record["num_nodes"][0]
        record["num_nodes"] = [size] * len(record["depths"])
        record["depths"] = [3 * size + (frontier > 2) for frontier in record["frontier_size"]]
    overall = depth_feature_importance(records, GROUPS, resamples=20)
    within = depth_feature_importance(records, GROUPS, resamples=20, within_prompt=True)
    assert overall["share"]["static"] > 0.8 and within["within_prompt"] and not overall["within_prompt"]
    assert within["r2_full"] == pytest.approx(1.0) and within["r2_feature"]["num_nodes"] == pytest.approx(0.0, abs=1e-9)
    assert within["share"]["algorithmic_state"] == pytest.approx(1.0, abs=0.02)
    assert within["depth_variance"] < overall["depth_variance"]
    low, high = within["share_interval"]["algorithmic_state"]
    assert low <= within["share"]["algorithmic_state"] <= high


def test_within_prompt_depth_that_never_moves_inside_a_prompt_has_nothing_to_explain():
    records = synthetic_records(lambda f: 0)
    for record in records:
        record["depths"] = [len(record["depths"])] * len(record["depths"])  # varies between prompts only
    result = depth_feature_importance(records, GROUPS, resamples=5, within_prompt=True)
    assert result["depth_variance"] == pytest.approx(0.0) and all(v != v for v in result["share"].values())
