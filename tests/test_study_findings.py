"""The protocol's rules for when each finding holds (anira_study.study_findings), on synthetic numbers and runs."""

import json

import pytest

from anira_study import study_findings, study_report
from anira_study.analysis import read_probe_log


def test_findings_follow_the_protocols_rules():
    run = {"seen_accuracy": {1: 1.0, 2: 0.95, 3: 0.91}, "rho_seen": 0.65, "seen_depth": {1: 1.0, 2: 2.0, 3: 3.0},
           "unseen_accuracy": {4: 0.5}, "unseen_depth": {4: 3.0}, "pooled_seen_accuracy": 0.95, "pooled_seen_depth": 2.0}
    assert study_findings.finding_1(run) and study_findings.finding_2(run)
    assert not study_findings.finding_1({**run, "rho_seen": 0.59}) and not study_findings.finding_1({**run, "seen_accuracy": {1: 0.89}})
    assert not study_findings.finding_2({**run, "unseen_accuracy": {4: 0.7}}) and not study_findings.finding_2({**run, "unseen_depth": {4: 2.9}})
    early = {**run, "pooled_seen_accuracy": 0.96, "pooled_seen_depth": 2.5}
    assert study_findings.finding_5(run, early) and not study_findings.finding_5({**run, "pooled_seen_accuracy": 0.93}, early)


def test_depth_pays_needs_the_gains_interval_above_1():
    assert study_findings.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.05, 1.5]})
    assert not study_findings.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.0, 1.5]})  # touches 1
    assert not study_findings.depth_pays({"adaptive_gain": 1.3, "adaptive_gain_interval": None})
    assert not study_findings.depth_pays({"seen_accuracy": {1: 1.0}})  # a fixed model has no gain
    undefined = {"adaptive_gain": float("nan"), "adaptive_gain_interval": [float("nan")] * 2}  # beats every uniform depth
    assert not study_findings.depth_pays(undefined) and study_report.gain_cell(undefined) == "undefined (above every uniform depth)"
    assert study_report.gain_cell({"adaptive_gain": 1.3, "adaptive_gain_interval": [1.05, 1.5]}) == "1.30 [1.05, 1.50]"


def test_depth_is_needed_counts_fixed_1_below_0_9_and_fixed_6_rising_in_2_of_3_seeds(tmp_path):
    from conftest import write_study_run

    write_study_run(tmp_path, "depo", "fixed-1", 0, {1: 1.0, 2: 0.898}, {1: 1.0, 2: 1.0})  # 0.898 prints as 0.90
    write_study_run(tmp_path, "depo", "fixed-6", 0, {1: 1.0, 2: 0.8}, {1: 6.0, 2: 6.0}, uniform_largest={1: 0.1, 6: 0.3})
    needed = study_report.study_summary("depo", tmp_path)["findings"]["depth_needed"]
    assert needed == {"fixed_1_largest_accuracy": {0: 0.898}, "fixed_1_below": 1, "fixed_1_seeds": 1,
                      "fixed_1_never_trained_there": [], "fixed_6_rising": 1, "fixed_6_seeds": 1, "holds": None}
    write_study_run(tmp_path, "depo", "fixed-1", 1, {1: 1.0, 2: 0.95}, {1: 1.0, 2: 1.0})
    write_study_run(tmp_path, "depo", "fixed-1", 2, {1: 1.0, 2: 0.90}, {1: 1.0, 2: 1.0})  # 0.90 is not below 0.9
    result = study_report.study_summary("depo", tmp_path)
    assert result["findings"]["depth_needed"]["holds"] is False  # 1 of 3 below: decided whatever fixed-6 does
    assert "largest seen size 0.898 (seed 0), 0.950 (seed 1), 0.900 (seed 2), below 0.9 in 1 of 3 seeds" in result["markdown"]
    assert result["markdown"].rstrip().endswith("(each needed in at least 2 of 3): does not hold.")
    write_study_run(tmp_path, "depo", "fixed-1", 1, {1: 1.0, 2: 0.5}, {1: 1.0, 2: 1.0})  # seed 1 again, now below
    for seed, curve in ((1, {1: 0.2, 6: 0.2}), (2, {1: 0.1, 6: 0.4})):  # a flat curve is not a rise
        write_study_run(tmp_path, "depo", "fixed-6", seed, {1: 1.0, 2: 0.8}, {1: 6.0, 2: 6.0}, uniform_largest=curve)
    needed = study_report.study_summary("depo", tmp_path)["findings"]["depth_needed"]
    assert (needed["fixed_1_below"], needed["fixed_6_rising"], needed["holds"]) == (2, 2, True)


def test_finding_3_needs_the_intervals_apart():
    def run(share, low, high):
        return {"execution_state_share_all_tokens": share, "execution_state_share_all_tokens_interval": [low, high]}

    assert study_findings.finding_3(run(0.05, 0.04, 0.06), run(0.02, 0.01, 0.03))
    assert not study_findings.finding_3(run(0.05, 0.03, 0.06), run(0.02, 0.01, 0.035))
    assert study_findings.finding_3({}, {}) is None


def _rho(rho, low=None, high=None):
    return {"rho_seen": rho, "rho_seen_interval": [rho - 0.1 if low is None else low, rho + 0.1 if high is None else high]}


def test_mano_finding_3_needs_anira_e_to_fall_beyond_its_intervals_and_the_drops_difference_interval_above_0():
    """PROTOCOL.md v2: ANIRA-E's rho(depth, l) falls more than ANIRA-O's when the marker is removed (each rho's
    interval from its run; the difference's interval by interval arithmetic)."""
    holds = study_findings.finding_3_marker(_rho(0.8), _rho(0.3), _rho(0.7), _rho(0.7))
    assert holds["holds"] and holds["early_apart"]
    assert (holds["early_drop"], holds["online_drop"], holds["difference"]) == pytest.approx((0.5, 0.0, 0.5))
    assert holds["difference_interval"] == pytest.approx([0.1, 0.9])  # (0.7 - 0.4) - (0.8 - 0.6), (0.9 - 0.2) - (0.6 - 0.8)
    near = study_findings.finding_3_marker(_rho(0.8), _rho(0.4), _rho(0.7), _rho(0.65))  # difference 0.35 > 0, interval low -0.05
    assert not near["holds"] and near["difference_interval"][0] == pytest.approx(-0.05) and "reaches 0" in near["why"]
    rise = study_findings.finding_3_marker(_rho(0.5), _rho(0.35), _rho(0.2), _rho(0.8))  # O's rho rises; E's intervals overlap
    assert rise["difference_interval"][0] > 0 and not rise["early_apart"] and not rise["holds"]
    other_way = study_findings.finding_3_marker(_rho(0.8), _rho(0.7), _rho(0.8), _rho(0.3))
    assert not other_way["holds"] and other_way["difference"] < 0
    undefined = study_findings.finding_3_marker(_rho(0.8), _rho(float("nan")), _rho(0.7), _rho(0.7))
    assert not undefined["holds"] and "ANIRA-E with <q>" in undefined["why"]
    assert not study_findings.finding_3_marker(_rho(0.8), {"rho_seen": 0.3, "rho_seen_interval": None}, _rho(0.7), _rho(0.7))["holds"]


def test_mano_report_counts_finding_3_per_seed_across_both_grids_and_names_the_runs_a_seed_lacks(tmp_path):
    """Seed 0 holds, seed 1 does not (the drops' interval reaches 0), seed 2 lacks mano-v9-no-marker's anira-o (and,
    at first, mano-v9's anira-e report): the report of either grid shows the same section, in results.md and
    summary.json."""
    from conftest import write_study_run

    rhos = {0: {"mano-v9": (0.8, 0.7), "mano-v9-no-marker": (0.3, 0.7)},
            1: {"mano-v9": (0.8, 0.7), "mano-v9-no-marker": (0.4, 0.65)},
            2: {"mano-v9": (0.8, 0.7), "mano-v9-no-marker": (0.3, 0.7)}}
    for seed, grids in rhos.items():
        for grid, (early, online) in grids.items():
            for model, rho in (("anira-e", early), ("anira-o", online)):
                if (seed, grid, model) != (2, "mano-v9-no-marker", "anira-o"):
                    write_study_run(tmp_path, grid, model, seed, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0}, rho=rho,
                                    report=(seed, grid, model) != (2, "mano-v9", "anira-e"))
    assert study_findings.mano_marker_pair("mano-v9-no-marker") == {"marker": "mano-v9", "no_marker": "mano-v9-no-marker"}
    assert study_findings.mano_marker_pair("mano") == {"marker": "mano", "no_marker": "mano-no-marker"}  # v2's, reported
    finding = study_findings.mano_marker_finding(study_findings.MANO_MARKER_GRIDS["v9"], tmp_path)
    assert {seed: d["holds"] for seed, d in finding["seeds"].items()} == {"0": True, "1": False}
    assert (finding["holds_seeds"], finding["decided_seeds"]) == (1, 2)
    assert finding["seeds"]["0"]["rho_seen"]["e_no_marker"] == {"rho": 0.3, "interval": [pytest.approx(0.2), 0.4]}
    [pending] = finding["pending"]
    assert pending["seed"] == 2 and pending["missing"] == [
        "mano-v9/anira-e-seed2 (runs/anira-e-seed2/report.json is missing)",
        "mano-v9-no-marker/anira-o-seed2 (no line in runs.json)"]
    # study_summary reads every line's report
    write_study_run(tmp_path, "mano-v9", "anira-e", 2, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0}, rho=0.8)
    for grid in ("mano-v9", "mano-v9-no-marker"):
        report = study_report.study_report(grid, tmp_path)
        written = json.loads((tmp_path / grid / "summary.json").read_text())["findings"]["finding_3_marker"]
        assert written["holds_seeds"] == 1 and written["pending"][0]["seed"] == 2
        markdown = (tmp_path / grid / "results.md").read_text()
        assert report["markdown"] in markdown and "Finding 3 on MANO holds in 1 of 2 seeds" in markdown
        assert "| 0 | 0.80 [0.70, 0.90] | 0.30 [0.20, 0.40] | 0.50 [0.30, 0.70] |" in markdown
        assert "mano-v9-no-marker/anira-o-seed2 (no line in runs.json)" in markdown
    write_study_run(tmp_path, "depo", "anira-e", 0, {1: 1.0, 2: 0.9}, {1: 2.0, 2: 3.0})
    assert "finding_3_marker" not in study_report.study_summary("depo", tmp_path)["findings"]  # MANO's grids only


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
    phases = study_findings.finding_4_phases(read_probe_log(log))
    assert phases["learned_step"] == 600 and phases["verdict"] == verdict
    assert (phases["d0"], phases["dl"], phases["dend"]) == (depth[0], depth[2], depth[-1])
    assert study_findings.finding_4_phases([]) is None  # no probe log


def test_the_iteration_loss_rule_counts_anira_o_seeds_whose_compute_fell_first_and_whose_twin_did_not():
    """Protocol v6 as amended: per seed, ANIRA-O's v4 verdict with the iteration loss against its twin's without."""
    fell, held, flat = "compute fell first", study_findings.FINDING_4_HOLDS, "no compute phase"
    run = lambda verdict: {"phases": {"verdict": verdict}}  # noqa: E731
    per_model = {"anira-o": {0: run(fell), 1: run(fell), 2: run(held)},
                 "anira-o-paper": {0: run(flat), 1: run(fell), 2: run(flat)},
                 "anira-e": {0: run(flat)}, "anira-e-paper": {0: run(held)}, "fixed-6": {0: {}}}
    twins = study_findings.iteration_loss_phases(per_model)
    assert (twins["holds_seeds"], twins["seeds"]) == (1, 3)  # seed 0 only: seed 1's twin fell first too, seed 2's O did not
    assert twins["pairs"]["anira-o / anira-o-paper"] == {0: [fell, flat], 1: [fell, fell], 2: [held, flat]}
    assert twins["pairs"]["anira-e / anira-e-paper"] == {0: [flat, held]}
    del per_model["anira-o-paper"][0]  # a seed counts only where both runs are in
    assert study_findings.iteration_loss_phases(per_model)["seeds"] == 2
    assert study_findings.iteration_loss_phases({"anira-o": per_model["anira-o"]}) is None  # no twin: no comparison
