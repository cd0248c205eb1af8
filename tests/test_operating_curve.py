"""anira_study.operating_curve (protocol v3): ANIRA-O at other halting thresholds, the rule that picks one on
validation, and `examples/study.py operating-curve` over a grid's anira-o runs."""

import json
from dataclasses import asdict, replace

import pytest

from anira_study import study, study_report
from anira_study.depth_need import generation_records, heldout_test_rows
from anira_study.operating_curve import (MARGIN, card_section, choose_threshold, curve, grid_counts, operating_curve_grid, pays,
                                         point_at,
                                         threshold_records, validation_rows)
from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
from anira_tasks.dataset import prompt_bucket
from modeling_anira import AniraForCausalLM

from conftest import load_script, tiny_model

SPEC = TaskSpec(task="depo", train_sizes=[1, 2], extrapolation_sizes=[3], num_train=8, num_validation=3,
                num_test_per_size=3, task_params={"num_nodes": 4})
LAYERS = (1, 1, 1)  # compute = 2 + depth


def rows_and_uniform():
    """Four one-token answers; uniform depths 1-3 answer 1, 2, 3 of them (accuracy 0.25, 0.5, 0.75)."""
    rows = [{"complexity": 1, "answer_length": 1, "split": "validation"} for _ in range(4)]
    uniform = [{"uniform_correct": c} for c in ([True] * 3, [False, True, True], [False, False, True], [False] * 3)]
    return rows, uniform


def records(correct, depths):
    return [{"correct": c, "depths": [d]} for c, d in zip(correct, depths)]


def known_curve():
    rows, uniform = rows_and_uniform()
    by_threshold = {
        0.3: records([True, False, False, False], [1, 1, 1, 1]),  # 0.25 at depth 1: as t = 1, gain 1
        0.5: records([True, True, True, False], [1, 2, 3, 1]),  # 0.75 at 1.75 (compute 3.75) against t = 3 (5)
        0.7: records([True, True, True, False], [3, 3, 3, 3]),  # 0.75 at 3: as t = 3, gain 1
    }
    return curve(rows, uniform, by_threshold, LAYERS, resamples=200)


def test_the_curve_holds_each_thresholds_accuracy_depth_compute_and_gain_against_the_uniform_depths():
    c = known_curve()
    assert [u["accuracy"] for u in c["uniform"]] == [0.25, 0.5, 0.75] and c["prompts"] == 4
    low, mid, high = c["thresholds"]
    assert (low["accuracy"], low["mean_depth"], low["compute"], low["gain"]["value"]) == (0.25, 1.0, 3.0, 1.0)
    assert (mid["accuracy"], mid["mean_depth"], mid["compute"]) == (0.75, 1.75, 3.75)
    assert mid["gain"]["value"] == pytest.approx(5 / 3.75) and mid["gain"]["uniform_depth"] == 3
    assert high["gain"]["value"] == pytest.approx(1.0) and point_at(c, 0.5) is mid
    with pytest.raises(ValueError, match="no threshold 0.6"):
        point_at(c, 0.6)


def test_the_rule_takes_the_cheapest_threshold_within_the_margin_of_the_best_uniform_depth():
    choice = choose_threshold(known_curve())
    assert choice["best_uniform"]["depth"] == 3 and choice["bar"] == pytest.approx(0.75 - MARGIN)
    assert choice["qualifying"] == [0.5, 0.7] and choice["threshold"] == 0.5


def test_the_rule_breaks_a_compute_tie_toward_the_higher_threshold_and_may_choose_none():
    c = known_curve()
    tied = {**c, "thresholds": [{**p, "compute": 4.0} if p["threshold"] != 0.3 else p for p in c["thresholds"]]}
    assert choose_threshold(tied)["threshold"] == 0.7
    # a threshold just at the bar qualifies; one a hair below it does not
    at_bar = {**c, "thresholds": [{**p, "accuracy": 0.75 - MARGIN} for p in c["thresholds"]]}
    assert choose_threshold(at_bar)["threshold"] == 0.3
    below = {**c, "thresholds": [{**p, "accuracy": 0.75 - MARGIN - 1e-6} for p in c["thresholds"]]}
    assert choose_threshold(below)["threshold"] is None and choose_threshold(below)["qualifying"] == []


def test_depth_pays_only_with_a_defined_gain_whose_interval_is_above_1():
    assert pays({"value": 1.3, "interval": [1.01, 1.6], "uniform_depth": 3})
    assert not pays({"value": 1.3, "interval": [0.99, 1.6], "uniform_depth": 3})
    assert not pays({"value": float("nan"), "interval": [float("nan")] * 2, "uniform_depth": None})
    assert not pays(None)


def test_a_larger_validation_split_stays_in_the_validation_bucket_apart_from_training_and_test():
    tokenizer = load_tokenizer("depo")
    data = build_dataset_dict(replace(SPEC, num_validation=6), tokenizer, num_proc=1)
    prompts = data["validation"]["prompt"]
    assert len(prompts) == 12 and len(set(prompts)) == 12
    assert {prompt_bucket(p, SPEC.heldout_fraction) for p in prompts} == {"validation"}
    assert not set(prompts) & set(data["test_seen"]["prompt"]) and not set(prompts) & set(data["train"]["prompt"])
    # the first size's prompts begin with the smaller split's (one stream per split, size after size)
    small = build_dataset_dict(SPEC, tokenizer, num_proc=1)["validation"]
    assert [r["prompt"] for r in data["validation"] if r["complexity"] == 1][:3] == [r["prompt"] for r in small if r["complexity"] == 1]


@pytest.fixture(scope="module")
def online_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anira-o")
    tokenizer = load_tokenizer("depo")
    model = tiny_model(depth_mode="online", vocab_size=len(tokenizer), max_depth=3, recurrence="fast")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "anira_data.json").write_text(json.dumps(asdict(SPEC)))
    return folder


def test_validation_rows_rebuild_the_folders_validation_split_at_the_seen_sizes(online_folder):
    rows = validation_rows(online_folder, per_size=3)
    expected = build_dataset_dict(SPEC, load_tokenizer("depo"), num_proc=1)["validation"]
    assert [r["prompt"] for r in rows] == expected["prompt"] and {r["split"] for r in rows} == {"validation"}


def test_a_folder_loads_at_each_threshold_and_the_threshold_decides_the_depths(online_folder):
    tokenizer = load_tokenizer("depo")
    rows = heldout_test_rows(online_folder, sizes=[1, 2])
    by_threshold = threshold_records(online_folder, rows, tokenizer, (0.1, 0.5, 0.9), batch_size=4)
    mean = {tau: sum(sum(r["depths"]) for r in recs) / sum(len(r["depths"]) for r in recs) for tau, recs in by_threshold.items()}
    assert mean[0.1] < mean[0.9]
    plain = AniraForCausalLM.from_pretrained(online_folder)  # the trained threshold, 0.5
    assert by_threshold[0.5] == generation_records(plain, rows, tokenizer, batch_size=4)


def test_a_model_that_is_not_anira_o_is_refused(tmp_path):
    tokenizer = load_tokenizer("depo")
    tiny_model(depth_mode="early", vocab_size=len(tokenizer), max_depth=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs an ANIRA-O"):
        threshold_records(tmp_path, [], tokenizer, (0.5,))


def test_the_grid_command_scores_every_anira_o_run_once_and_writes_the_table_and_figure(online_folder, tmp_path):
    import shutil

    study_dir = tmp_path / "study"
    for seed in (0, 1):
        shutil.copytree(online_folder, study_dir / "depo" / "runs" / f"anira-o-seed{seed}")
        study.record_run("depo", {"run": f"anira-o-seed{seed}", "model": "anira-o", "seed": seed, "protocol_version": "v1",
                                  "quick": True, "folder": f"runs/anira-o-seed{seed}"}, study_dir)
    study.record_run("depo", {"run": "fixed-1-seed0", "model": "fixed-1", "seed": 0, "protocol_version": "v1", "quick": True,
                              "folder": "runs/fixed-1-seed0"}, study_dir)
    result = load_script("study").main(["operating-curve", "--task", "depo", "--quick", "--study_dir", str(study_dir)])
    assert sorted(result["runs"]) == [0, 1] and result["figure"].exists()
    for seed in (0, 1):
        saved = json.loads((study_dir / "depo" / "runs" / f"anira-o-seed{seed}" / "operating_curve.json").read_text())
        assert saved["protocol_version"] == "v3" and saved["seed"] == seed and len(saved["test"]["thresholds"]) == 9
        assert saved["choice"]["threshold"] == (None if saved["at_choice"] is None else saved["at_choice"]["threshold"])
    markdown = (study_dir / "depo" / "operating_curve-quick.md").read_text()
    assert "of 2 seeds" in markdown and "| 0 | t=" in markdown and "| 1 | t=" in markdown
    # two seeds of three: the verdict waits for the third unless both already failed
    verdict = "does not hold" if result["pays_seeds"] < 2 else "is undecided"
    assert f"{result['pays_seeds']} of 2 seeds, so it {verdict} for the task (the rule: 3 of 3 seeds)." in markdown
    counts = grid_counts("depo", study_dir, quick=True)
    assert counts == {"file": "operating_curve-quick.md", "seeds": 2, "pays_seeds": result["pays_seeds"]}
    line = study_report.format_study({"task": "depo", "protocol_version": "v1", "runs": 0, "models": {}, "findings": {},
                                      "operating_curve": counts})
    assert f"{counts['pays_seeds']} of 2 seeds; every threshold and seed: [operating_curve-quick.md]" in line
    # recorded results are read, not computed again (unless --force)
    (study_dir / "depo" / "runs" / "anira-o-seed0" / "operating_curve.json").write_text(json.dumps(
        {**saved, "seed": 0, "date": "marker"}))
    again = operating_curve_grid("depo", study_dir, quick=True)
    assert again["runs"][0]["date"] == "marker"


def test_the_card_section_shows_every_threshold_the_uniform_depths_the_choice_and_how_to_load_it():
    test = known_curve()
    result = {"test": test, "choice": choose_threshold(test), "date": "2026-12-06 16:09 UTC", "machine": "a machine",
              "command": "python examples/study.py operating-curve --task depo"}
    text = "\n".join(card_section(result))
    assert "from_pretrained(path, halting_threshold=0.3)" in text and "it chose 0.5" in text
    assert "| threshold | 0.3 | 0.5 | 0.7 |" in text and "| accuracy | 0.250 | 0.750 | 0.750 |" in text
    assert "| mean depth | 1.00 | 1.75 | 3.00 |" in text and "| uniform depth | 1 | 2 | 3 |" in text
    none = "\n".join(card_section({**result, "choice": {**result["choice"], "threshold": None}}))
    assert "no threshold qualified" in none
