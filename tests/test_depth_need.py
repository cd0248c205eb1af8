"""anira_study.depth_need and `examples/analyze.py depth-need`: uniform depths, oracle depth, allocation, gains."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from anira_study.depth_need import (allocation_versus_oracle, depth_need_records, depth_need_report, depth_need_summary,
                                    folder_task_spec, format_depth_need, generation_records, heldout_test_rows,
                                    oracle_depth, uniform_depth_records)
from anira_study.evaluation import generated_correct
from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
from modeling_anira import AniraForCausalLM

from conftest import load_script, tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SPEC = TaskSpec(task="depo", train_sizes=[1, 2], extrapolation_sizes=[3], num_train=8, num_validation=2,
                num_test_per_size=3, task_params={"num_nodes": 4})


@pytest.fixture(scope="module")
def depo():
    tokenizer = load_tokenizer("depo")
    rows = [row for split in ("test_seen", "test_extrapolation") for row in build_dataset_dict(SPEC, tokenizer, num_proc=1)[split]]
    return tokenizer, rows


def test_uniform_depth_records_run_every_answer_position_at_exactly_t(depo):
    tokenizer, rows = depo
    model = tiny_model(depth_mode="fixed", vocab_size=len(tokenizer), max_depth=3)
    records = uniform_depth_records(model, rows, tokenizer, batch_size=4)
    assert all(r["uniform_ran"] == [[1], [2], [3]] and len(r["uniform_correct"]) == 3 for r in records)
    # the same scoring as the evaluation, on the same weights loaded with max_depth = t
    for t in (1, 2, 3):
        at_t = AniraForCausalLM(tiny_config(depth_mode="fixed", vocab_size=len(tokenizer), max_depth=t)).to(torch.float64).eval()
        at_t.load_state_dict(model.state_dict())
        assert [r["uniform_correct"][t - 1] for r in records] == generated_correct(at_t, rows, tokenizer)
    with pytest.raises(ValueError, match="fixed-mode model"):
        uniform_depth_records(tiny_model(depth_mode="online", vocab_size=len(tokenizer)), rows, tokenizer)


def test_allocated_depths_are_the_depths_of_the_models_own_generation_at_the_answer_positions(depo):
    tokenizer, rows = depo
    model = tiny_model(depth_mode="early", vocab_size=len(tokenizer), max_depth=5)
    records = generation_records(model, rows, tokenizer, batch_size=4)
    seen = set()
    for row, record in zip(rows, records):
        prompt = torch.tensor([row["input_ids"][:row["answer_start"]]])
        sequence = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=len(row["input_ids"]) - row["answer_start"], eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
        forward = model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).depths[0]
        first = row["answer_start"] - 1
        assert record["depths"] == forward[first:first + row["answer_length"]].tolist()
        seen.update(record["depths"])
    assert len(seen) > 1  # the controller really varies depth, so the positions are checked


def test_oracle_depth_is_the_smallest_uniform_depth_that_answers():
    assert oracle_depth([False, False, True, False, True]) == 3
    assert oracle_depth([True, True]) == 1
    assert oracle_depth([False, False, False]) is None
    assert oracle_depth([False, True], min_depth=2) == 3
    records = depth_need_records([{"complexity": 2, "answer_length": 1}], [{"uniform_correct": [False, True, True]}])
    assert records[0]["oracle_depth"] == 2


def hand_records():
    """Four prompts, depths 1..4, layers (1, 1, 1): compute(t) = 2 + t.

    uniform: p1 right from t=1, p2 from t=2, p3 from t=3, p4 never (accuracy 1/4, 2/4, 3/4, 3/4); oracle depths
    1, 2, 3, none. The adaptive model answers p1..p3 (3/4) with depths 1, [3, 1] (two answer tokens), 3, 2."""
    rows = [{"complexity": c, "answer_length": n, "split": "test_seen"} for c, n in ((1, 1), (2, 2), (3, 1), (3, 1))]
    uniform = [{"uniform_correct": u} for u in ([True] * 4, [False, True, True, True], [False, False, True, True], [False] * 4)]
    adaptive = [{"correct": c, "depths": d} for c, d in ((True, [1]), (True, [3, 1]), (True, [3]), (False, [2]))]
    return depth_need_records(rows, uniform, adaptive)


def test_gains_on_hand_built_records_have_the_known_values():
    summary = depth_need_summary(hand_records(), layers=(1, 1, 1), resamples=200)
    assert [entry["correct"] for entry in summary["uniform"]] == [1, 2, 3, 3]
    assert [entry["compute"] for entry in summary["uniform"]] == [3, 4, 5, 6]
    oracle = summary["oracle"]
    # oracle allocation: p1 at 1, p2 at 2 (two tokens), p3 at 3, p4 at min_depth 1 -> 9 iterations over 5 tokens
    assert oracle["correct"] == 3 and oracle["no_oracle"] == 1 and oracle["depth_counts"] == {"1": 1, "2": 1, "3": 1, "4": 0, "none": 1}
    assert oracle["mean_depth"] == pytest.approx(9 / 5)
    assert oracle["gain"]["uniform_depth"] == 3 and oracle["gain"]["value"] == pytest.approx(5 / (2 + 9 / 5))
    # the most accurate uniform depth is 3 (4 ties with it, and costs more); it answers p1..p3: the same allocation
    assert oracle["gain_matched"]["uniform_depth"] == 3 and oracle["gain_matched"]["value"] == pytest.approx(5 / (2 + 9 / 5))
    adaptive = summary["adaptive"]
    # 3 of 4 right: the cheapest uniform depth with 3 right is t = 3; own depth pooled over 5 answer tokens: 10 / 5
    assert adaptive["correct"] == 3 and adaptive["mean_depth"] == pytest.approx(2.0)
    assert adaptive["gain"]["uniform_depth"] == 3 and adaptive["gain"]["value"] == pytest.approx(5 / 4)
    # p1 1 vs 1 exactly, p2 mean 2 vs 2 exactly, p3 3 vs 3 exactly; p4 has no oracle depth
    assert {k: v["count"] for k, v in adaptive["allocation"].items()} == {"less": 0, "exactly": 3, "more": 0}
    for gain in (oracle["gain"], oracle["gain_matched"], adaptive["gain"]):
        low, high = gain["interval"]
        assert low <= gain["value"] <= high


def test_a_gain_no_uniform_depth_reaches_is_undefined_and_shares_split_by_the_unrounded_mean():
    records = hand_records()
    records[3] |= {"adaptive_correct": True}  # 4 of 4: above every uniform depth
    records[1] |= {"allocated_depths": [3, 2], "allocated_depth": 2.5}  # 2.5 > 2: more, though it rounds to 2 or 3
    records[2] |= {"allocated_depths": [2], "allocated_depth": 2.0}  # less
    adaptive = depth_need_summary(records, layers=(1, 1, 1), resamples=50)["adaptive"]
    assert math.isnan(adaptive["gain"]["value"]) and adaptive["gain"]["uniform_depth"] is None
    assert {k: v["count"] for k, v in adaptive["allocation"].items()} == {"less": 1, "exactly": 1, "more": 1}
    assert "undefined" in format_depth_need(depth_need_report(records, layers=(1, 1, 1), resamples=50))


def test_rho_of_allocated_and_oracle_depth_is_scipys_spearman_over_prompts_with_an_oracle():
    rng = np.random.default_rng(0)
    records = [{"oracle_depth": int(o) if o else None, "allocated_depth": float(a)}
               for o, a in zip(rng.integers(0, 6, 60), rng.integers(1, 6, 60) + rng.random(60))]
    kept = [(r["allocated_depth"], r["oracle_depth"]) for r in records if r["oracle_depth"] is not None]
    result = allocation_versus_oracle(records, resamples=100)
    assert result["rho_prompts"] == len(kept) < 60
    assert result["rho"] == pytest.approx(spearmanr(*zip(*kept)).statistic)
    assert result["rho_interval"][0] <= result["rho"] <= result["rho_interval"][1]


def test_a_fixed_model_report_has_uniform_depths_and_oracle_but_no_allocation():
    records = [{k: v for k, v in r.items() if k not in ("adaptive_correct", "allocated_depths", "allocated_depth")}
               for r in hand_records()]
    report = depth_need_report(records, layers=(1, 2, 1), resamples=20)
    assert "adaptive" not in report["overall"] and report["overall"]["uniform"][1]["compute"] == 1 + 2 * 2 + 1
    assert set(report["per_complexity"]) == {"1", "2", "3"} and report["per_split"]["test_seen"]["prompts"] == 4
    json.dumps(report)
    assert "adaptive" not in format_depth_need(report)


def test_test_prompts_are_the_evaluations_whatever_the_train_split_and_recipes_give_the_spec(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "anira_data.json").write_text(json.dumps(asdict(SPEC)))
    full = build_dataset_dict(SPEC, num_proc=1)
    rows = heldout_test_rows(folder, num_prompts=2)
    expected = [p for split in ("test_seen", "test_extrapolation") for size in (1, 2, 3)
                for p in [r["prompt"] for r in full[split] if r["complexity"] == size][:2]]
    assert [r["prompt"] for r in rows] == expected
    assert {r["split"] for r in rows if r["complexity"] == 3} == {"test_extrapolation"}
    with pytest.raises(ValueError, match=r"--sizes \[7\]"):
        heldout_test_rows(folder, sizes=[1, 7])
    # a trained named folder: its recipe rebuilds the sizes and the prompt count its report was evaluated on
    shipped = json.loads((ROOT / "hub_configs/anira-o-depo/report.json").read_text())
    spec, report = folder_task_spec(ROOT / "hub_configs/anira-o-depo"), shipped["report"]
    # the task its recipe trains (the report names the study's grid, depo-v8)
    assert spec.task == "depo" and shipped["task"].startswith("depo") and list(spec.train_sizes) == shipped["train_sizes"]
    assert list(spec.train_sizes) == sorted(int(c) for c in report["test_seen"]["per_complexity"])
    assert list(spec.extrapolation_sizes) == sorted(int(c) for c in report["test_extrapolation"]["per_complexity"])
    assert {entry["items"] for entry in report["test_seen"]["per_complexity"].values()} == {spec.num_test_per_size}


def test_analyze_depth_need_runs_on_a_tiny_saved_model(tmp_path, depo):
    tokenizer, _ = depo
    folder = tmp_path / "anira-o-tiny"
    model = tiny_model(depth_mode="online", vocab_size=len(tokenizer), max_depth=3, dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "anira_data.json").write_text(json.dumps(asdict(SPEC)))
    analyze = load_script("analyze")
    results = analyze.main(["depth-need", "--models", str(folder), "--num_prompts", "2", "--sizes", "1", "3",
                            "--resamples", "20", "--output_dir", str(tmp_path / "out")])
    written = json.loads((tmp_path / "out" / "depth_need.json").read_text())["anira-o-tiny"]
    assert written["sizes"] == [1, 3] == results["anira-o-tiny"]["sizes"]
    assert set(written["per_complexity"]) == {"1", "3"} and written["overall"]["prompts"] == 4
    assert [entry["depth"] for entry in written["overall"]["uniform"]] == [1, 2, 3]
    assert written["layers"] == {"prelude": 1, "core": 2, "coda": 1} and "adaptive" in written["overall"]
    assert written["table"].startswith("| prompts |")
    with pytest.raises(ValueError, match="--num_prompts"):
        analyze.main(["depth-need", "--models", str(folder), "--num_prompts", "0"])
