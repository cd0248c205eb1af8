"""The replicated study's machinery (anira_study.study): the frozen grids, one run end to end, the report."""

import json
import os
from pathlib import Path

import pytest

from anira_study import study


def test_every_model_of_a_grid_trains_on_the_same_data_and_schedule(tmp_path):
    from test_study_search import choose

    for search in study.SEARCHES:  # the searched grids: once their search has chosen (synthetic validation numbers)
        choose(search, tmp_path)
    for task in study.GRIDS:
        argvs = {model: study.training_args(task, model, 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
                 for model in study.MODELS}
        adaptive = [a for m, a in argvs.items() if study.MODELS[m][0] != "fixed"]
        fixed = [a for m, a in argvs.items() if study.MODELS[m][0] == "fixed"]
        assert all(a == adaptive[0] for a in adaptive) and all(a == fixed[0] for a in fixed)
        assert adaptive[0] == fixed[0] + study.ADAPTIVE_ARGS  # only the penalty schedule differs
        assert "--resume_from_checkpoint" not in fixed[0] and "--seed" in fixed[0]


def test_model_configs_differ_only_in_the_declared_fields():
    configs = {model: study.model_config("depo", model)[0].to_dict() for model in study.MODELS}
    base = configs["fixed-6"]
    for model, config in configs.items():
        changed = {k for k in config if config[k] != base.get(k)}
        declared = set(study.MODELS[model][1]) | {"depth_mode"}
        assert changed <= declared, (model, changed - declared)
    assert configs["fixed-3"]["max_depth"] == 3 and configs["anira-o"]["depth_mode"] == "online"
    with pytest.raises(ValueError, match="not 'bogus'"):
        study.model_config("depo", "bogus")
    with pytest.raises(ValueError, match="grids for"):
        study.model_config("minimum", "anira-o")


def test_pending_runs_are_seed_major_and_skip_recorded_ones(tmp_path):
    study.record_run("depo", {"run": "anira-o-seed0", "model": "anira-o", "seed": 0, "protocol_version": study.protocol_version("depo"),
                              "quick": False}, tmp_path)
    todo = study.pending_runs("depo", ["anira-e", "anira-o"], [0, 1], tmp_path)
    assert todo == [("anira-e", 0), ("anira-e", 1), ("anira-o", 1)]


def test_a_quick_run_trains_evaluates_records_and_reports(tmp_path):
    summary = study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "work", tmp_path / "study", quick=True)
    folder = tmp_path / "study" / "depo" / "runs" / "fixed-1-seed0"
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.py"))
    runs = json.loads((tmp_path / "study" / "depo" / "runs.json").read_text())
    from anira_study.reproduce import QUICK

    steps = int(QUICK["--max_steps"])  # a quick run is reproduce.py's quick run
    assert [(r["model"], r["seed"], r["steps"], r["protocol_version"]) for r in runs] == [("fixed-1", 0, steps, "v1")]
    assert summary["depth_need"]["max_depth"] == 1 and "test_seen" in summary["report"]
    again = study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "work", tmp_path / "study", quick=True)
    assert again["train_seconds"] == summary["train_seconds"]  # finished: not trained again
    report = study.study_report("depo", tmp_path / "study", quick=True)
    assert report["models"]["fixed-1"]["pooled_seen_accuracy"]["seeds"] == 1
    assert "| fixed-1 | 0 |" in (tmp_path / "study" / "depo" / "results-quick.md").read_text()
    drawn = study.study_figures("depo", tmp_path / "study", quick=True)  # the figures read what a real run records
    model = drawn["curves"]["models"]["fixed-1"]
    assert drawn["curves"]["finished"] == ["fixed-1-seed0"] and len(drawn["missing"]) == 14
    assert set(model["oracle_depth"]) == set(model["accuracy"]) == {1, 2, 3, 4, 5, 6}
    assert model["dynamics"]["steps"][-1] == steps and all(p.name.endswith("-quick.png") for p in drawn["paths"])
    with pytest.raises(ValueError, match="no runs of protocol"):
        study.study_report("brevo", tmp_path / "study")


def test_findings_follow_the_protocols_rules():
    run = {"seen_accuracy": {1: 1.0, 2: 0.95, 3: 0.91}, "rho_seen": 0.65, "seen_depth": {1: 1.0, 2: 2.0, 3: 3.0},
           "unseen_accuracy": {4: 0.5}, "unseen_depth": {4: 3.0}, "pooled_seen_accuracy": 0.95, "pooled_seen_depth": 2.0}
    assert study.finding_1(run) and study.finding_2(run)
    assert not study.finding_1({**run, "rho_seen": 0.59}) and not study.finding_1({**run, "seen_accuracy": {1: 0.89}})
    assert not study.finding_2({**run, "unseen_accuracy": {4: 0.7}}) and not study.finding_2({**run, "unseen_depth": {4: 2.9}})
    early = {**run, "pooled_seen_accuracy": 0.96, "pooled_seen_depth": 2.5}
    assert study.finding_5(run, early) and not study.finding_5({**run, "pooled_seen_accuracy": 0.93}, early)


def test_depth_pays_needs_the_gains_interval_above_1():
    assert study.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.05, 1.5]})
    assert not study.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.0, 1.5]})  # touches 1
    assert not study.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": None})
    assert not study.depth_pays({"seen_accuracy": {1: 1.0}})  # a fixed model has no gain
    undefined = {"adaptive_gain": float("nan"), "adaptive_gain_interval": [float("nan")] * 2}  # beats every uniform depth
    assert not study.depth_pays(undefined) and study.gain_cell(undefined) == "undefined (above every uniform depth)"
    assert study.gain_cell({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.05, 1.5]}) == "1.30 [1.05, 1.50]"


def test_depth_is_needed_counts_fixed_1_below_0_9_and_fixed_6_rising_in_2_of_3_seeds(tmp_path):
    from conftest import write_study_run

    write_study_run(tmp_path, "depo", "fixed-1", 0, {1: 1.0, 2: 0.898}, {1: 1.0, 2: 1.0})  # 0.898 prints as 0.90
    write_study_run(tmp_path, "depo", "fixed-6", 0, {1: 1.0, 2: 0.8}, {1: 6.0, 2: 6.0}, uniform_largest={1: 0.1, 6: 0.3})
    needed = study.study_summary("depo", tmp_path)["findings"]["depth_needed"]
    assert needed == {"fixed_1_largest_accuracy": {0: 0.898}, "fixed_1_below": 1, "fixed_1_seeds": 1, "fixed_6_rising": 1,
                      "fixed_6_seeds": 1, "holds": None}
    write_study_run(tmp_path, "depo", "fixed-1", 1, {1: 1.0, 2: 0.95}, {1: 1.0, 2: 1.0})
    write_study_run(tmp_path, "depo", "fixed-1", 2, {1: 1.0, 2: 0.90}, {1: 1.0, 2: 1.0})  # 0.90 is not below 0.9
    result = study.study_summary("depo", tmp_path)
    assert result["findings"]["depth_needed"]["holds"] is False  # 1 of 3 below: decided whatever fixed-6 does
    assert "largest seen size 0.898 (seed 0), 0.950 (seed 1), 0.900 (seed 2), below 0.9 in 1 of 3 seeds" in result["markdown"]
    assert result["markdown"].rstrip().endswith("(each needed in at least 2 of 3): does not hold.")
    write_study_run(tmp_path, "depo", "fixed-1", 1, {1: 1.0, 2: 0.5}, {1: 1.0, 2: 1.0})  # seed 1 again, now below
    for seed, curve in ((1, {1: 0.2, 6: 0.2}), (2, {1: 0.1, 6: 0.4})):  # a flat curve is not a rise
        write_study_run(tmp_path, "depo", "fixed-6", seed, {1: 1.0, 2: 0.8}, {1: 6.0, 2: 6.0}, uniform_largest=curve)
    needed = study.study_summary("depo", tmp_path)["findings"]["depth_needed"]
    assert (needed["fixed_1_below"], needed["fixed_6_rising"], needed["holds"]) == (2, 2, True)


def test_a_brevo_run_of_an_adaptive_model_reports_finding_3s_feature_shares_on_seen_sizes(tmp_path):
    summary = study.train_and_evaluate("brevo", "anira-o", 0, tmp_path / "work", tmp_path / "study", quick=True)
    shares = summary["feature_importance"]["all_tokens"]["share"]
    assert set(shares) == {"static", "execution_state"}
    assert "records" not in summary["report"]["test_seen"]
    numbers = study.run_numbers(summary)
    assert numbers["execution_state_share_all_tokens"] == pytest.approx(shares["execution_state"], nan_ok=True)


def test_finding_3_needs_the_intervals_apart():
    def run(share, low, high):
        return {"execution_state_share_all_tokens": share, "execution_state_share_all_tokens_interval": [low, high]}

    assert study.finding_3(run(0.05, 0.04, 0.06), run(0.02, 0.01, 0.03))
    assert not study.finding_3(run(0.05, 0.03, 0.06), run(0.02, 0.01, 0.035))
    assert study.finding_3({}, {}) is None


def test_the_grid_runs_pending_runs_several_at_a_time_one_thread_each_and_more_per_gpu(tmp_path, monkeypatch):
    """run_grid launches `study.py one` per pending (model, seed), at most `processes` at once: by default one per
    core on CPU and four sharing a GPU, each with one OpenMP thread."""
    import subprocess
    import threading

    import torch

    launched, running, peak, lock = [], [0], [0], threading.Lock()

    def fake_run(command, cwd, env, stdout, stderr):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        launched.append((command, env["OMP_NUM_THREADS"]))
        import time
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    results = study.run_grid("depo", ["anira-o", "fixed-1"], [0, 1, 2], tmp_path / "work", tmp_path / "study")
    assert [(m, s) for m, s, _ in results] == [(m, s) for s in (0, 1, 2) for m in ("anira-o", "fixed-1")]
    assert len(launched) == 6 and {threads for _, threads in launched} == {"1"}
    assert 2 <= peak[0] <= 4  # four at a time on a GPU (six jobs)
    command = launched[0][0]
    assert command[command.index("one") + 1:command.index("one") + 3] == ["--task", "depo"]
    peak[0] = 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    study.run_grid("depo", ["anira-o"], [0, 1, 2], tmp_path / "work", tmp_path / "study")
    assert peak[0] <= 2  # one per core on CPU


def _probe(step, accuracy, depth):
    return {"step": step, **{f"probe/answer_exact@{c}": accuracy for c in (1, 2)}, **{f"probe/depth@{c}": depth for c in (1, 2)}}


def _grid_in_progress(study_dir):
    """anira-e at seeds 0-2, anira-o at seeds 0-1 (seed 1's probe log ends early), fixed-6 seed 0 recorded but its
    report lost; nothing else."""
    from conftest import write_study_run

    for seed, (acc, dep) in enumerate([(0.9, 2.0), (0.6, 3.0), (0.75, 4.0)]):
        write_study_run(study_dir, "depo", "anira-e", seed, {1: acc, 2: acc - 0.1, 3: 0.1}, {1: dep, 2: dep + 1, 3: dep + 1},
                        oracle={1: 1.0, 2: 1.0 + seed, 3: 2.0}, probe=[_probe(100, acc / 2, 6.0), _probe(200, acc, dep)])
    for seed in (0, 1):
        write_study_run(study_dir, "depo", "anira-o", seed, {1: 1.0, 2: 0.8, 3: 0.2}, {1: 1.0 + seed, 2: 2.0, 3: 2.5},
                        probe=[_probe(100, 0.2 + seed, 5.0)] + ([_probe(200, 0.9, 1.5)] if seed == 0 else []))
    write_study_run(study_dir, "depo", "fixed-6", 0, {1: 1.0, 2: 1.0, 3: 0.1}, {1: 6.0, 2: 6.0, 3: 6.0}, report=False)


def test_study_curves_bands_span_every_seeds_value_and_name_each_missing_run(tmp_path):
    _grid_in_progress(tmp_path)
    curves = study.study_curves("depo", tmp_path)
    early = curves["models"]["anira-e"]
    assert early["seeds"] == [0, 1, 2] and curves["train_sizes"] == [1, 2]
    assert early["accuracy"][1] == {"seeds": {0: 0.9, 1: 0.6, 2: 0.75}, "mean": pytest.approx(0.75), "min": 0.6, "max": 0.9,
                                    "count": 3}
    assert (early["depth"][3]["min"], early["depth"][3]["max"]) == (3.0, 5.0)  # an unseen size from test_extrapolation
    assert (early["oracle_depth"][2]["min"], early["oracle_depth"][2]["max"]) == (1.0, 3.0)
    assert curves["models"]["anira-o"]["oracle_depth"] is None  # no depth-need sizes in its reports
    probe = early["dynamics"]
    assert probe["steps"] == [100, 200] and probe["accuracy_metric"] == "probe/answer_exact@<size>"
    assert (probe["accuracy"][1][1]["min"], probe["accuracy"][1][1]["max"]) == (0.6, 0.9)
    online = curves["models"]["anira-o"]["dynamics"]
    assert [b["count"] for b in online["accuracy"][1]] == [2, 1]  # seed 1 logged step 100 only
    missing = {m["run"]: m["why"] for m in curves["missing"]}
    assert set(missing) == {"anira-o-seed2", "fixed-6-seed0", *(f"{m}-seed{s}" for m in ("fixed-6", "fixed-3", "fixed-1")
                                                                  for s in (0, 1, 2))}
    assert "report.json is missing" in missing["fixed-6-seed0"] and missing["anira-o-seed2"] == "no line in runs.json"
    assert "fixed-6-seed0" not in curves["finished"] and "fixed-6" not in curves["models"]
    note = study.missing_note(curves)
    assert "5 runs drawn" in note and "anira-o seed 2" in note and "fixed-3 seeds 0, 1, 2" in note
    assert study.band({0: 1.0, 1: float("nan"), 2: None})["count"] == 1  # an undefined value is no seed's value


def test_study_figures_draw_a_grid_in_progress_with_bands_over_the_seeds(tmp_path, monkeypatch):
    from conftest import load_script

    from anira_study import figures

    _grid_in_progress(tmp_path)
    drawn = {}
    save = figures._save_figure
    monkeypatch.setattr(figures, "_save_figure", lambda fig, path: drawn.setdefault(Path(path).stem, fig) and save(fig, path))
    result = load_script("study").main(["figures", "--task", "depo", "--study_dir", str(tmp_path)])
    assert [p.name for p in result["paths"]] == ["accuracy_depth.png", "depth_allocated_needed.png", "training_dynamics.png"]
    assert all((tmp_path / "depo" / p.name).stat().st_size > 0 for p in result["paths"])
    assert "missing" in drawn["accuracy_depth"]._suptitle.get_text()
    accuracy_axis = drawn["accuracy_depth"].axes[0]
    lines = {line.get_label(): line for line in accuracy_axis.get_lines()}
    assert list(lines["anira-e (3 seeds)"].get_ydata()) == pytest.approx([0.75, 0.65, 0.1])
    band = accuracy_axis.collections[0].get_paths()[0].vertices  # anira-e's band: from each size's min to its max
    at_size_1 = band[band[:, 0] == 1, 1]
    assert (at_size_1.min(), at_size_1.max()) == pytest.approx((0.6, 0.9))
    assert len(drawn["training_dynamics"].axes) == 4  # anira-e and anira-o, accuracy and depth
    with pytest.raises(ValueError, match="no finished run of protocol v1.*anira-e-seed0"):
        study.study_curves("brevo", tmp_path)


def test_the_study_answer_is_pending_until_a_run_has_finished_and_then_shows_seed_0_beside_the_seed_range(tmp_path):
    from conftest import write_study_run

    pending = study.study_answer("depo", tmp_path)
    assert pending["status"] == "pending" and "pending" in pending["text"] and study.PROTOCOL_FILE in pending["text"]
    assert "table" not in pending and len(pending["missing"]) == 15
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 3.0}, report=False)  # recorded, report lost
    assert study.study_answer("depo", tmp_path)["status"] == "pending"
    assert study.study_answer("minimum", tmp_path)["status"] == "no grid"
    searched = study.study_answer("mano", tmp_path)  # a searched grid names its search first
    assert searched["status"] == "pending" and "study.py search --task mano" in searched["text"]
    for seed, (accuracy, rho, gain) in enumerate([(0.9, 0.7, 1.3), (0.5, 0.2, 0.9), (0.7, 0.65, 1.1)]):
        write_study_run(tmp_path, "depo", "anira-e", seed, {1: accuracy, 2: accuracy, 3: 0.1}, {1: 2.0, 2: 3.0, 3: 3.0},
                        rho=rho, gain=gain)
    write_study_run(tmp_path, "depo", "fixed-6", 1, {1: 1.0, 2: 1.0, 3: 0.1}, {1: 6.0, 2: 6.0, 3: 6.0})
    answer = study.study_answer("depo", tmp_path)
    assert answer["status"] == "results" and (answer["runs"], answer["expected"]) == (4, 15)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in answer["table"].splitlines()[2:]}
    early = rows["anira-e"]
    assert early[1:4] == ["0.90", "2.50", "0.70 [0.60, 0.80]"]  # seed 0 (the shipped run): its own numbers
    assert early[4] == "0.10" and early[5] == "1.30 [1.20, 1.40]" and early[6] == "1.50"
    assert early[7] == "0.70 (0.50 to 0.90, 3 seeds)" and early[8] == "0.52 (0.20 to 0.70, 3 seeds)"  # the range spans every seed
    assert early[9] == "1.10 (0.90 to 1.30, 3 seeds)" and early[10].strip(" |") == "1 of 3"  # F1: seed 0 only (0.9 and 0.7)
    assert rows["fixed-6"][1] == "seed 0 pending" and rows["fixed-6"][7] == "1.00 (1.00 to 1.00, 1 seed)"
    assert "4 of 15 runs finished" in answer["text"] and "anira-o-seed0" in answer["text"]
    # gain intervals' low ends 1.2, 0.8, 1.0: only seed 0's is above 1
    assert "Depth pays (adaptive gain with its interval above 1): anira-e 1 of 3 seeds." in answer["text"]
    assert answer["text"].endswith("undecided (seeds to come).")  # no fixed-1 run yet: the depth-needed verdict waits
    assert answer["curves"]["models"]["anira-e"]["accuracy"][1]["seeds"] == {0: 0.9, 1: 0.5, 2: 0.7}


def _record_many(args):
    study_dir, worker = args
    for i in range(25):
        study.record_run("depo", {"run": f"w{worker}-{i}", "protocol_version": "v1", "model": "fixed-1", "seed": i},
                         study_dir)


def test_runs_finishing_together_in_separate_processes_all_keep_their_line(tmp_path):
    """A grid's runs are separate processes writing one runs.json: under the file lock none loses another's line
    (4 processes x 25 writes; without the lock the read-modify-write races lose lines)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_record_many, [(tmp_path, worker) for worker in range(4)])
    runs = study.read_runs("depo", tmp_path)
    assert sorted(r["run"] for r in runs) == sorted(f"w{w}-{i}" for w in range(4) for i in range(25))


def test_every_grid_and_search_has_a_protocol_version_whose_section_is_written():
    """Each grid and search records the version that declared it; PROTOCOL.md holds that version's text (v1 the
    document's head, later versions a dated section), and v1's grids stay v1 when later versions add grids."""
    text = (study.STUDY_DIR / "PROTOCOL.md").read_text()
    assert set(study.VERSIONS) == set(study.GRIDS) | set(study.SEARCHES)
    assert study.protocol_version("depo") == study.protocol_version("brevo") == "v1"
    for version in set(study.VERSIONS.values()):
        number = int(version.removeprefix("v"))
        assert (f"protocol {version}" in text.splitlines()[0]) if number == 1 else (f"## Version {number} (" in text), version
    with pytest.raises(ValueError, match="not 'nope'"):
        study.protocol_version("nope")


def _rho(rho, low=None, high=None):
    return {"rho_seen": rho, "rho_seen_interval": [rho - 0.1 if low is None else low, rho + 0.1 if high is None else high]}


def test_mano_finding_3_needs_anira_e_to_fall_beyond_its_intervals_and_the_drops_difference_interval_above_0():
    """PROTOCOL.md v2: ANIRA-E's rho(depth, l) falls more than ANIRA-O's when the marker is removed (each rho's
    interval from its run; the difference's interval by interval arithmetic)."""
    holds = study.finding_3_marker(_rho(0.8), _rho(0.3), _rho(0.7), _rho(0.7))
    assert holds["holds"] and holds["early_apart"]
    assert (holds["early_drop"], holds["online_drop"], holds["difference"]) == pytest.approx((0.5, 0.0, 0.5))
    assert holds["difference_interval"] == pytest.approx([0.1, 0.9])  # (0.7 - 0.4) - (0.8 - 0.6), (0.9 - 0.2) - (0.6 - 0.8)
    near = study.finding_3_marker(_rho(0.8), _rho(0.4), _rho(0.7), _rho(0.65))  # difference 0.35 > 0, interval low -0.05
    assert not near["holds"] and near["difference_interval"][0] == pytest.approx(-0.05) and "reaches 0" in near["why"]
    rise = study.finding_3_marker(_rho(0.5), _rho(0.35), _rho(0.2), _rho(0.8))  # O's rho rises; E's intervals overlap
    assert rise["difference_interval"][0] > 0 and not rise["early_apart"] and not rise["holds"]
    other_way = study.finding_3_marker(_rho(0.8), _rho(0.7), _rho(0.8), _rho(0.3))
    assert not other_way["holds"] and other_way["difference"] < 0
    undefined = study.finding_3_marker(_rho(0.8), _rho(float("nan")), _rho(0.7), _rho(0.7))
    assert not undefined["holds"] and "ANIRA-E with <q>" in undefined["why"]
    assert not study.finding_3_marker(_rho(0.8), {"rho_seen": 0.3, "rho_seen_interval": None}, _rho(0.7), _rho(0.7))["holds"]


def test_mano_report_counts_finding_3_per_seed_across_both_grids_and_names_the_runs_a_seed_lacks(tmp_path):
    """Seed 0 holds, seed 1 does not (the drops' interval reaches 0), seed 2 lacks mano-no-marker's anira-o (and, at
    first, mano's anira-e report): the report of either grid shows the same section, in results.md and summary.json."""
    from conftest import write_study_run

    rhos = {0: {"mano": (0.8, 0.7), "mano-no-marker": (0.3, 0.7)}, 1: {"mano": (0.8, 0.7), "mano-no-marker": (0.4, 0.65)},
            2: {"mano": (0.8, 0.7), "mano-no-marker": (0.3, 0.7)}}
    for seed, grids in rhos.items():
        for grid, (early, online) in grids.items():
            for model, rho in (("anira-e", early), ("anira-o", online)):
                if (seed, grid, model) != (2, "mano-no-marker", "anira-o"):
                    write_study_run(tmp_path, grid, model, seed, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0}, rho=rho,
                                    report=(seed, grid, model) != (2, "mano", "anira-e"))
    finding = study.mano_marker_finding(tmp_path)
    assert {seed: d["holds"] for seed, d in finding["seeds"].items()} == {"0": True, "1": False}
    assert (finding["holds_seeds"], finding["decided_seeds"]) == (1, 2)
    assert finding["seeds"]["0"]["rho_seen"]["e_no_marker"] == {"rho": 0.3, "interval": [pytest.approx(0.2), 0.4]}
    [pending] = finding["pending"]
    assert pending["seed"] == 2 and pending["missing"] == [
        "mano/anira-e-seed2 (runs/anira-e-seed2/report.json is missing)", "mano-no-marker/anira-o-seed2 (no line in runs.json)"]
    write_study_run(tmp_path, "mano", "anira-e", 2, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0}, rho=0.8)  # study_summary reads every line's report
    for grid in ("mano", "mano-no-marker"):
        report = study.study_report(grid, tmp_path)
        written = json.loads((tmp_path / grid / "summary.json").read_text())["findings"]["finding_3_marker"]
        assert written["holds_seeds"] == 1 and written["pending"][0]["seed"] == 2
        markdown = (tmp_path / grid / "results.md").read_text()
        assert report["markdown"] in markdown and "Finding 3 on MANO holds in 1 of 2 seeds" in markdown
        assert "| 0 | 0.80 [0.70, 0.90] | 0.30 [0.20, 0.40] | 0.50 [0.30, 0.70] |" in markdown
        assert "mano-no-marker/anira-o-seed2 (no line in runs.json)" in markdown
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0})
    assert "finding_3_marker" not in study.study_summary("depo", tmp_path)["findings"]  # MANO's grids only


def _hold_runner_lock(path, ready, release):
    with study.runner_lock(path):
        ready.set()
        release.wait(30)


def test_a_second_runner_of_the_same_grid_is_refused_while_the_first_runs(tmp_path):
    """Two `study.py run` of one grid in one work folder would train the same runs into the same checkpoints: the
    second is refused, naming the first's process, and runs once the first has ended."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    path = tmp_path / "depo" / study.RUNNER_LOCK
    holder = context.Process(target=_hold_runner_lock, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RuntimeError, match=f"another runner \\(process {holder.pid}\\)"):
            with study.runner_lock(path):
                pass
    finally:
        release.set()
        holder.join(30)
    with study.runner_lock(path):  # free again
        assert path.read_text().strip() == str(os.getpid())


def test_run_takes_several_grids_and_names_a_failed_run_with_its_grid(tmp_path, monkeypatch):
    """`study.py run --task depo brevo` hands both grids to one queue (so one command keeps a machine busy across
    both), and names a failed run with its grid."""
    from conftest import load_script

    script = load_script("study")
    asked = []

    def fake_grids(tasks, models, seeds, work_dir, study_dir, processes, quick):
        asked.append(list(tasks))
        return [(task, model, seed, 1 if (task, model, seed) == ("brevo", "fixed-1", 2) else 0)
                for task in tasks for model in models for seed in seeds]

    monkeypatch.setattr(script, "run_grids", fake_grids)
    with pytest.raises(SystemExit, match=r"failed runs .*: brevo/fixed-1-seed2$"):
        script.main(["run", "--task", "depo", "brevo", "--study_dir", str(tmp_path), "--work_dir", str(tmp_path / "w")])
    assert asked == [["depo", "brevo"]]


def test_several_grids_share_one_pool_so_the_next_grid_starts_while_the_last_run_of_the_first_trains(tmp_path, monkeypatch):
    """With two processes, DEPO's slow last run does not hold BREVO back: BREVO's runs start on the free process
    while it trains; the runs still start grid after grid, seed-major, each logged under its own grid."""
    import subprocess
    import time

    started, ended = {}, {}

    def fake_run(command, cwd, env, stdout, stderr):
        name = (command[command.index("--task") + 1], command[command.index("--seed") + 1])
        started[name] = time.monotonic()
        time.sleep({("depo", "1"): 0.3, ("depo", "2"): 1.0}.get(name, 0.05))  # depo 2 starts when depo 0 ends
        ended[name] = time.monotonic()
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    results = study.run_grids(["depo", "brevo"], ["fixed-1"], [0, 1, 2], tmp_path / "work", tmp_path / "study", processes=2)
    assert [(task, seed) for task, _, seed, _ in results] == [(t, s) for t in ("depo", "brevo") for s in (0, 1, 2)]
    assert set(sorted(started, key=started.get)[:3]) == {("depo", "0"), ("depo", "1"), ("depo", "2")}
    assert all(started[("brevo", seed)] < ended[("depo", "2")] for seed in ("0", "1", "2"))
    assert (tmp_path / "work" / "brevo" / "logs" / "fixed-1-seed0.log").exists()
    assert (tmp_path / "work" / "depo" / "logs" / "fixed-1-seed2.log").exists()


def test_a_landed_run_rewrites_the_grids_report_and_figures(tmp_path, capsys):
    """refresh_after_run (called when a run lands in the real runs.json) rewrites results.md, summary.json and the
    figures from runs.json, so the linked report never lags behind the runs; a failure is said, not raised."""
    from conftest import write_study_run

    write_study_run(tmp_path, "depo", "anira-o", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 2.0})
    study.refresh_after_run("depo", tmp_path, hub_dir=tmp_path / "hub")
    results = (tmp_path / "depo" / "results.md").read_text()
    assert "| anira-o | 0 |" in results and "anira-o-seed1" not in results
    # this stand-in run has no weights: the operating curve (protocol v3) fails, says so, and the report still follows
    assert "protocol v3's operating curve failed" in capsys.readouterr().out
    assert (tmp_path / "depo" / "accuracy_depth.png").stat().st_size > 0
    write_study_run(tmp_path, "depo", "anira-o", 1, {1: 0.9, 2: 0.7}, {1: 1.0, 2: 2.0})
    study.refresh_after_run("depo", tmp_path, hub_dir=tmp_path / "hub")
    assert "| anira-o | 1 |" in (tmp_path / "depo" / "results.md").read_text()
    assert json.loads((tmp_path / "depo" / "summary.json").read_text())
    (tmp_path / "depo" / "runs" / "anira-o-seed1" / "report.json").unlink()  # a broken grid: said, not raised
    study.refresh_after_run("depo", tmp_path, hub_dir=tmp_path / "hub")
    assert "the run is recorded, but rewriting its report" in capsys.readouterr().out


def test_a_range_over_seeds_reads_clearly_with_negative_bounds():
    stat = {"mean": -0.43, "min": -0.46, "max": -0.40, "low": -0.50, "high": -0.36, "seeds": 3}
    assert study._over(stat) == "-0.43 (range -0.46 to -0.40, t-interval [-0.50, -0.36], 3 seeds)"
    assert study._over({"mean": -0.46, "min": -0.46, "max": -0.46, "seeds": 1}) == "-0.46 (1 seed)"  # no range of one


def test_every_recorded_run_of_the_study_is_in_the_repository():
    """runs.json names a folder per run; its weights and report are committed with it (a clone without them would
    report a finished grid as pending): each is tracked by git, not ignored."""
    import subprocess

    tracked = set(subprocess.run(["git", "ls-files", str(study.STUDY_DIR)], cwd=study.REPO, capture_output=True,
                                 text=True, check=True).stdout.split())
    for runs_file in sorted(study.STUDY_DIR.glob(f"*/{study.RUNS_FILE}")):
        task = runs_file.parent.name
        for entry in study.read_runs(task):
            for name in ("report.json", "model.safetensors", "config.json"):
                path = (runs_file.parent / entry["folder"] / name).relative_to(study.REPO).as_posix()
                assert path in tracked, f"{path} is recorded in {runs_file.name} but not in the repository"


def test_the_report_says_when_each_adaptive_runs_compute_penalty_came_on_or_that_it_never_did(tmp_path):
    """The gate keeps the penalty at 0 until the validation probe's token accuracy reaches 0.9; a run whose gate never
    opened trained without it, and its row says so (`penalty_onset` reads the probe log)."""
    from conftest import write_study_run

    def record(step, penalty):
        return {"step": step, "probe/compute_penalty": penalty, "probe/mean_depth": 2.0}

    write_study_run(tmp_path, "depo", "anira-o", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 2.0},
                    probe=[record(200, 0.0), record(400, 0.0), record(600, 0.0006), record(800, 0.003)])
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.8}, {1: 3.0, 2: 3.0}, probe=[record(200, 0.0), record(400, 0.0)])
    write_study_run(tmp_path, "depo", "fixed-6", 0, {1: 1.0, 2: 0.9}, {1: 6.0, 2: 6.0}, probe=[record(200, 0.01)])
    assert study.penalty_onset(tmp_path / "depo" / "runs" / "anira-o-seed0" / "probe_log.jsonl") == 600
    assert study.penalty_onset(tmp_path / "depo" / "runs" / "missing" / "probe_log.jsonl") is None
    per_run = [line for line in study.study_report("depo", tmp_path)["markdown"].splitlines()
               if line.startswith(("| anira-", "| fixed-")) and line.split(" | ")[1] == "0"]  # (model, seed 0) rows
    rows = {line.split(" | ")[0].lstrip("| "): line for line in per_run}
    assert rows["anira-o"].endswith("| 600 |") and rows["anira-e"].endswith("| never |")
    assert rows["fixed-6"].endswith("| - | - | - |")


@pytest.mark.parametrize("accuracy, depth, penalty, verdict", [
    ([0.2, 0.5, 0.95, 1.0, 1.0], [6.0, 6.0, 5.5, 3.0, 2.0], [0, 0, 0, 0, 0], "learn, then cut compute"),  # 0.5 of 4 before
    ([0.2, 0.5, 0.95, 1.0, 1.0], [6.0, 3.0, 2.5, 2.0, 2.0], [0, 0, 0, 0, 0], "compute fell first"),  # 3.5 of 4 before
    ([0.2, 0.5, 0.95, 1.0, 1.0], [3.0, 3.0, 3.0, 2.5, 2.2], [0, 0, 0, 0, 0], "no compute phase"),  # a fall of 0.8
    ([0.2, 0.5, 0.95, 1.0, 1.0], [6.0, 6.0, 5.5, 3.0, 2.0], [0, 0.001, 0.003, 0.003, 0.003], "forced"),  # on at step 400
])
def test_finding_4_reads_the_fall_of_depth_before_and_after_the_learned_step(tmp_path, accuracy, depth, penalty, verdict):
    """Protocol v4: the learned step is the first probe at 0.9 of the maximum accuracy (step 600 here); the verdict
    compares the fall before it with the whole fall, unless the penalty came on by then."""
    log = tmp_path / "probe_log.jsonl"
    log.write_text("".join(json.dumps({"step": 200 * (i + 1), "probe/token_accuracy": a, "probe/answer_depth": d,
                                       "probe/compute_penalty": p}) + "\n"
                           for i, (a, d, p) in enumerate(zip(accuracy, depth, penalty))))
    phases = study.finding_4_phases(log)
    assert phases["learned_step"] == 600 and phases["verdict"] == verdict
    assert (phases["d0"], phases["dl"], phases["dend"]) == (depth[0], depth[2], depth[-1])
    assert study.finding_4_phases(tmp_path / "missing.jsonl") is None
