"""The study over seeds (anira_study.study_report): the figures' bands over a grid in progress, the main job's
answer, the report's cells."""

import json
from pathlib import Path

import pytest

from anira_study import study, study_findings, study_report
from anira_study.analysis import read_probe_log


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
    curves = study_report.study_curves("depo", tmp_path)
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
    note = study_report.missing_note(curves)
    assert "5 runs drawn" in note and "anira-o seed 2" in note and "fixed-3 seeds 0, 1, 2" in note
    assert study_report.band({0: 1.0, 1: float("nan"), 2: None})["count"] == 1  # an undefined value is no seed's value


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
        study_report.study_curves("brevo", tmp_path)
    several = load_script("study").main(["figures", "--task", "depo", "brevo", "--study_dir", str(tmp_path)])
    assert list(several) == ["depo"] and [p.name for p in several["depo"]["paths"]] == [p.name for p in result["paths"]]


def test_the_study_answer_is_pending_until_a_run_has_finished_and_then_shows_seed_0_beside_the_seed_range(tmp_path):
    from conftest import write_study_run

    pending = study_report.study_answer("depo", tmp_path)
    assert pending["status"] == "pending" and "pending" in pending["text"] and study.PROTOCOL_FILE in pending["text"]
    assert "table" not in pending and len(pending["missing"]) == 15
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 3.0}, report=False)  # recorded, report lost
    assert study_report.study_answer("depo", tmp_path)["status"] == "pending"
    assert study_report.study_answer("minimum", tmp_path)["status"] == "no grid"
    searched = study_report.study_answer("mano", tmp_path)  # a searched grid names its search first
    assert searched["status"] == "pending" and "study.py search --task mano" in searched["text"]
    for seed, (accuracy, rho, gain) in enumerate([(0.9, 0.7, 1.3), (0.5, 0.2, 0.9), (0.7, 0.65, 1.1)]):
        write_study_run(tmp_path, "depo", "anira-e", seed, {1: accuracy, 2: accuracy, 3: 0.1}, {1: 2.0, 2: 3.0, 3: 3.0},
                        rho=rho, gain=gain)
    write_study_run(tmp_path, "depo", "fixed-6", 1, {1: 1.0, 2: 1.0, 3: 0.1}, {1: 6.0, 2: 6.0, 3: 6.0})
    answer = study_report.study_answer("depo", tmp_path)
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


def test_a_range_over_seeds_reads_clearly_with_negative_bounds():
    stat = {"mean": -0.43, "min": -0.46, "max": -0.40, "low": -0.50, "high": -0.36, "seeds": 3}
    assert study_report._over(stat) == "-0.43 (range -0.46 to -0.40, t-interval [-0.50, -0.36], 3 seeds)"
    assert study_report._over({"mean": -0.46, "min": -0.46, "max": -0.46, "seeds": 1}) == "-0.46 (1 seed)"  # no range of one


def test_the_report_says_when_each_adaptive_runs_compute_penalty_came_on_or_that_it_never_did(tmp_path):
    """The gate keeps the penalty at 0 until the validation probe's token accuracy reaches 0.9; a run whose gate never
    opened trained without it, and its row says so (`penalty_onset` reads the probe log's records)."""
    from conftest import write_study_run

    def record(step, penalty):
        return {"step": step, "probe/compute_penalty": penalty, "probe/mean_depth": 2.0}

    write_study_run(tmp_path, "depo", "anira-o", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 2.0},
                    probe=[record(200, 0.0), record(400, 0.0), record(600, 0.0006), record(800, 0.003)])
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.8}, {1: 3.0, 2: 3.0}, probe=[record(200, 0.0), record(400, 0.0)])
    write_study_run(tmp_path, "depo", "fixed-6", 0, {1: 1.0, 2: 0.9}, {1: 6.0, 2: 6.0}, probe=[record(200, 0.01)])
    report = tmp_path / "depo" / "runs" / "anira-o-seed0" / "report.json"  # trained with the compiled forward (v5)
    report.write_text(json.dumps(json.loads(report.read_text()) | {"train_args": ["--seed", "0", "--compile_model", "true"]}))
    assert study_findings.penalty_onset(read_probe_log(tmp_path / "depo" / "runs" / "anira-o-seed0" / "probe_log.jsonl")) == 600
    assert study_findings.penalty_onset([]) is None  # no probe log
    per_run = [line for line in study_report.study_report("depo", tmp_path)["markdown"].splitlines()
               if line.startswith(("| anira-", "| fixed-")) and line.split(" | ")[1] == "0"]  # (model, seed 0) rows
    rows = {line.split(" | ")[0].lstrip("| "): line for line in per_run}
    assert rows["anira-o"].endswith("| 600 | - | compiled |") and rows["anira-e"].endswith("| never | - | eager |")
    assert rows["fixed-6"].endswith("| - | - | - | - | eager |")


def test_the_report_says_from_which_step_each_run_trained_on_each_seen_size_and_names_runs_that_never_did(tmp_path):
    """A curriculum unlocks the next size when the validation probe allows: the row gives each seen size's first step
    (a size whose own unlock the log lacks, but a larger size's it holds, 'by' that step), and a sentence names the
    runs that never trained on a seen size; the depth-needed line says when fixed-1 never trained on the largest."""
    from conftest import write_study_run

    def unlock(step, size):
        return {"event": "curriculum_unlock", "step": step, "unlocked_size": size}

    probe = [{"step": 200, "probe/compute_penalty": 0.0, "probe/mean_depth": 2.0}]
    sizes = (1, 2, 3)
    accuracy, depth = {1: 1.0, 2: 0.9, 3: 0.5}, {1: 1.0, 2: 1.0, 3: 1.0}
    write_study_run(tmp_path, "depo", "fixed-1", 0, accuracy, depth, train_sizes=sizes, probe=[*probe, unlock(400, 2)])
    write_study_run(tmp_path, "depo", "fixed-3", 0, accuracy, depth, train_sizes=sizes, probe=[*probe, unlock(800, 3)])
    write_study_run(tmp_path, "depo", "fixed-6", 0, accuracy, depth, train_sizes=sizes, probe=probe)  # no curriculum
    for model in ("fixed-1", "fixed-3"):
        report = tmp_path / "depo" / "runs" / f"{model}-seed0" / "report.json"
        report.write_text(json.dumps(json.loads(report.read_text()) | {"train_args": ["--curriculum_accuracy", "0.8"]}))
    result = study_report.study_summary("depo", tmp_path)
    cells = {model: result["models"][model]["seeds"]["0"]["trained_from_step"] for model in ("fixed-1", "fixed-3", "fixed-6")}
    assert cells == {"fixed-1": {1: 0, 2: 400, 3: None}, "fixed-3": {1: 0, 2: {"by": 800}, 3: 800}, "fixed-6": None}
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result["markdown"].splitlines() if line.startswith("| fixed-")
            and line.split(" | ")[1] == "0"}
    assert rows["fixed-1"].endswith("| 0 / 400 / never | eager |") and rows["fixed-3"].endswith("| 0 / by 800 / 800 | eager |")
    assert rows["fixed-6"].endswith("| - | eager |")
    assert ("In 1 of 2 runs the curriculum never unlocked a seen size, so the run never trained on it and its accuracy "
            "there is that of a size it never saw: fixed-1 seed 0 (3).") in result["markdown"]
    assert result["findings"]["depth_needed"]["fixed_1_never_trained_there"] == [0]
    assert "(`fixed-1` never trained on that size in seed 0: its curriculum never unlocked it" in result["markdown"]


def test_the_report_sets_each_controller_beside_its_paper_objective_twin_when_the_grid_has_them(tmp_path):
    """DEPO v6 (amended): anira-o and anira-o-paper's v4 verdicts per seed, and the declared rule's count."""
    from conftest import write_study_run

    def probe(depths, accuracies):  # every 200 steps: the v4 verdict reads the depth at the first, learned and last probe
        return [{"step": 200 * (i + 1), "probe/token_accuracy": a, "probe/answer_depth": d, "probe/mean_depth": d,
                 "probe/compute_penalty": 0.0} for i, (d, a) in enumerate(zip(depths, accuracies))]

    learning = [0.2, 0.5, 0.9, 0.95, 0.95]
    write_study_run(tmp_path, "depo-v6", "anira-o", 0, {1: 1.0, 2: 0.8}, {1: 1.0, 2: 1.0}, probe=probe([6, 1, 1, 1, 1], learning))
    write_study_run(tmp_path, "depo-v6", "anira-o-paper", 0, {1: 1.0, 2: 0.8}, {1: 6.0, 2: 6.0},
                    probe=probe([6, 6, 6, 5.8, 5.8], learning))
    markdown = study_report.study_report("depo-v6", tmp_path)["markdown"]
    assert "| seed | anira-o / anira-o-paper |" in markdown
    assert "| 0 | compute fell first / no compute phase |" in markdown
    assert "The iteration loss makes ANIRA-O's compute fall first" in markdown
    assert "needed in at least 2 of 3 seeds): 1 of 1 seeds." in markdown
    assert "anira-o-paper | 0 |" in markdown  # the twin has its rows in the per-run tables too
