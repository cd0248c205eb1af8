"""Per-complexity evaluation: the metric modules, teacher-forced and generated accuracy, depth, examples/evaluate_models.py."""

import json
import math
from pathlib import Path

import pytest
import torch

from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
from anira_study.evaluation import evaluation_report, format_table
from anira_study.metrics import METRIC_NAMES, load_metric, metric_path
from anira_study.evaluation import answer_records, generated_correct, summarize_by_complexity

from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]




def test_metric_modules_load_by_path_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in METRIC_NAMES:
        assert Path(metric_path(name)).is_file()
        assert load_metric(name) is not None


def test_spearman_metric_is_one_for_monotone_depth_and_nan_for_constant_depth():
    metric = load_metric("depth_complexity_spearman")
    result = metric.compute(predictions=[1, 1, 2, 3, 3], references=[1, 1, 2, 3, 3])
    assert result["spearman"] == pytest.approx(1.0)
    assert result["mean_depth_per_complexity"] == {1: 1.0, 2: 2.0, 3: 3.0}
    assert math.isnan(metric.compute(predictions=[4, 4, 4], references=[1, 2, 3])["spearman"])
    assert metric.compute(predictions=[3, 2, 1], references=[1, 2, 3])["spearman"] == pytest.approx(-1.0)


def test_accuracy_metric_groups_by_complexity():
    result = load_metric("complexity_accuracy").compute(predictions=[5, 6, 7, 7], references=[5, 0, 7, 1], complexities=[1, 1, 2, 2])
    assert result["accuracy"] == 0.5
    assert result["accuracy_per_complexity"] == {1: 0.5, 2: 0.5}
    assert result["count_per_complexity"] == {1: 2, 2: 2}


class OracleModel(torch.nn.Module):
    """Predicts every next token of the rows it was built for, with depth = position's complexity."""

    def __init__(self, rows, vocab_size):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.rows, self.vocab_size = rows, vocab_size

    def forward(self, input_ids, attention_mask, labels=None, **kwargs):
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab_size)
        depths = torch.full((batch, length), -1)
        for i in range(batch):
            row = next(r for r in self.rows if r["input_ids"] == input_ids[i][attention_mask[i].bool()].tolist())
            ids = row["input_ids"]
            for p in range(len(ids) - 1):
                logits[i, p, ids[p + 1]] = 1.0
            depths[i, : len(ids)] = row["complexity"]
        return type("Out", (), {"logits": logits, "depths": depths, "compute_loss": torch.tensor(0.5)})()


def test_answer_records_score_teacher_forced_tokens_and_read_depth_at_predicting_positions():
    tokenizer = load_tokenizer("brevo")
    data = build_dataset_dict(TaskSpec(task="brevo", train_sizes=[4, 6], num_train=8, num_validation=2, num_test_per_size=3), tokenizer)
    rows = data["test_seen"].to_list()
    records = answer_records(OracleModel(rows, len(tokenizer)), rows, tokenizer, batch_size=4)
    assert all(r["answer_correct"] and len(r["token_correct"]) == row["answer_length"] for r, row in zip(records, rows))
    assert all(r["depths"] == [row["complexity"]] * row["answer_length"] for r, row in zip(records, rows))
    summary = summarize_by_complexity(records)
    assert summary["per_complexity"][6]["mean_depth"] == 6.0 and summary["overall"]["token_accuracy"] == 1.0


def test_a_different_valid_brevo_order_counts_as_correct_under_teacher_forcing():
    tokenizer = load_tokenizer("brevo")
    data = build_dataset_dict(TaskSpec(task="brevo", train_sizes=[8], num_train=8, num_validation=2, num_test_per_size=30), tokenizer)
    from anira_tasks import valid_next_tokens
    row = next(r for r in data["test_seen"].to_list() if len(valid_next_tokens(r, 0)) > 1)
    alternative = sorted(valid_next_tokens(row, 0) - {row["answer"].split()[0]})[0]
    swapped = dict(row, input_ids=list(row["input_ids"]))
    swapped["input_ids"][row["answer_start"]] = tokenizer.convert_tokens_to_ids(alternative)
    # the oracle predicts the swapped first token: valid, though it differs from the reference
    records = answer_records(OracleModel([swapped], len(tokenizer)), [dict(row, input_ids=swapped["input_ids"])], tokenizer)
    assert records[0]["token_correct"][0]


@pytest.fixture(scope="module")
def tiny_depo_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("evaluate") / "anira-o"
    train = load_script("train")
    train.main(["--model_name_or_path", str(ROOT / "hub_configs/anira-o-depo"), "--from_scratch", "true", "--config_overrides",
                "hidden_size=32,intermediate_size=64,num_core_layers=1,max_depth=3,depth_init_bias=0.0",
                "--task", "depo", "--train_sizes", "1", "2", "--extrapolation_sizes", "3", "--task_params", '{"num_nodes": 4}',
                "--num_train", "64", "--num_validation", "8", "--num_test_per_size", "6", "--output_dir", str(output_dir),
                "--per_device_train_batch_size", "8", "--max_steps", "2", "--report_to", "none", "--use_cpu", "true",
                "--save_strategy", "no", "--probe_steps", "1", "--probe_per_size", "2", "--disable_tqdm", "true"])
    return output_dir


def test_generated_answers_are_scored_for_every_row(tiny_depo_run):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_depo_run)
    tokenizer = load_tokenizer("depo")
    data = build_dataset_dict(TaskSpec(task="depo", train_sizes=[1, 2], num_train=8, num_validation=2, num_test_per_size=4,
                                       task_params={"num_nodes": 4}), tokenizer)
    rows = data["test_seen"].to_list()
    correct = generated_correct(model, rows, tokenizer, batch_size=3)
    assert len(correct) == len(rows) and all(isinstance(c, bool) for c in correct)
    # greedy generation's first token is the teacher-forced argmax: the two accuracies agree on one-token answers
    records = answer_records(model, rows, tokenizer)
    assert [r["answer_correct"] for r in records] == correct


def test_evaluate_script_writes_a_report_with_every_split_and_complexity(tiny_depo_run, tmp_path):
    evaluate_script = load_script("evaluate_models")
    reports = evaluate_script.main(["--models", str(tiny_depo_run), "--names", "ANIRA-O", "--output_dir", str(tmp_path)])
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "complexity.png").stat().st_size > 0
    per = report["reports"]["ANIRA-O"]
    assert set(per["test_seen"]["per_complexity"]) == {"1", "2"} and set(per["test_extrapolation"]["per_complexity"]) == {"3"}
    for values in per["test_seen"]["per_complexity"].values():
        assert {"token_accuracy", "answer_accuracy", "generated_accuracy", "mean_depth", "samples"} <= set(values)
        assert 1.0 <= values["mean_depth"] <= 3.0
    assert "spearman" in per["all"] and report["train_sizes"] == [1, 2]
    assert "rho(depth, c)" in format_table(reports)


def test_evaluation_report_on_two_models_gives_one_table_column_each(tiny_depo_run):
    from transformers import AutoModelForCausalLM
    from anira_study.evaluation import load_eval_data
    data, _ = load_eval_data(tiny_depo_run)
    model = AutoModelForCausalLM.from_pretrained(tiny_depo_run)
    tokenizer = load_tokenizer("depo")
    report = evaluation_report(model, data, tokenizer, generate=False)
    table = format_table({"A": report, "B": report})
    assert table.count("rho(depth, c)") == 2 * 3  # seen, unseen, all


def test_a_larger_validation_split_comes_from_the_held_out_bucket_and_leaves_the_rest_alone(tiny_depo_run, tmp_path):
    from anira_study.evaluation import load_eval_data
    from anira_tasks.dataset import prompt_bucket
    data, sizes = load_eval_data(tiny_depo_run)
    larger, same_sizes = load_eval_data(tiny_depo_run, num_validation=20)
    assert same_sizes == sizes == [1, 2]
    counts = {c: larger["validation"]["complexity"].count(c) for c in sizes}
    assert counts == {1: 20, 2: 20} and len(data["validation"]) == 16
    prompts = set(larger["validation"]["prompt"])
    assert len(prompts) == 40 and {prompt_bucket(p, 0.1) for p in prompts} == {"validation"}
    assert not prompts & set(larger["train"]["prompt"])
    for split in ("train", "test_seen", "test_extrapolation"):
        assert larger[split]["prompt"] == data[split]["prompt"]
    (tmp_path / "anira_data.json").write_text(json.dumps({"dataset_path": str(tmp_path / "saved")}))
    with pytest.raises(ValueError, match="num_validation rebuilds a generated split"):
        load_eval_data(tmp_path, num_validation=20)


def test_a_hub_folder_is_evaluated_on_the_data_its_recipe_rebuilds(monkeypatch, tmp_path):
    """A shipped folder has recipe.json, not anira_data.json: examples/evaluate_models.py rebuilds its data from the
    recipe's last stage (folder_task_spec), the data `reproduce` evaluated."""
    from anira_study import evaluation

    built = []
    monkeypatch.setattr(evaluation, "build_dataset_dict", lambda spec: built.append(spec) or {"train": []})
    data, sizes = evaluation.load_eval_data(ROOT / "hub_configs/anira-o-depo", num_validation=12)
    spec = evaluation.folder_task_spec(ROOT / "hub_configs/anira-o-depo")
    trained_on = json.loads((ROOT / "hub_configs/anira-o-depo/report.json").read_text())["train_sizes"]
    assert built == [TaskSpec(**{**spec.__dict__, "num_validation": 12})] and sizes == trained_on == list(spec.train_sizes)
    import shutil

    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):  # no recipe
        shutil.copy(ROOT / "hub_configs/anira-o-depo" / name, tmp_path / name)
    evaluate = load_script("evaluate_models")
    with pytest.raises(ValueError, match="neither anira_data.json nor recipe.json"):
        evaluate.main(["--models", str(tmp_path)])


def test_rho_of_a_constant_depth_is_printed_as_undefined_with_the_reason():
    from anira_study.statistics import format_correlation
    assert format_correlation(0.8215, [0.801, 0.84]) == "0.82 [0.80, 0.84]"
    assert format_correlation(0.5, None) == "0.50"
    assert format_correlation(float("nan"), [float("nan")] * 2) == "undefined (constant depth)"
    values = {"items": 2, "generated_accuracy": 1.0, "mean_depth": 6.0}
    entry = {"per_complexity": {"3": values}, "overall": values, "items": 2,
             "spearman": float("nan"), "spearman_interval": [float("nan")] * 2}
    table = format_table({"fixed": {"test_seen": entry, "all": entry}})
    assert "rho(depth, c) undefined" in table and "nan" not in table


def test_shipped_findings_state_each_model_with_its_rho_or_why_it_is_undefined():
    from anira_study.findings import shipped_findings
    seen = {"overall": {"generated_accuracy": 1.0, "mean_depth": 6.0}, "items": 750,
            "spearman": float("nan"), "spearman_interval": [float("nan")] * 2}
    adaptive = dict(seen, overall={"generated_accuracy": 0.98, "mean_depth": 1.9}, spearman=0.82, spearman_interval=[0.8, 0.84])
    lines = shipped_findings({"fixed": {"report": {"test_seen": seen}, "steps": 30000, "train_minutes": 73.0},
                              "online": {"report": {"test_seen": adaptive}, "steps": 15000, "train_minutes": 70.0},
                              "missing": {"skipped": "no weights"}})
    assert "rho(depth, c) seen undefined (constant depth) over 750 prompts" in lines[0]
    assert "rho(depth, c) seen 0.82 [0.80, 0.84] over 750 prompts" in lines[1]
    assert lines[2] == "missing: not evaluated (no weights)."


def test_unseen_size_reports_count_prompt_symbols_no_training_row_holds_as_well_as_untrained_answers(tiny_depo_run):
    from transformers import AutoModelForCausalLM
    from anira_study.evaluation import load_eval_data, trained_input_symbols
    records = [{"complexity": c, "token_correct": [True], "answer_correct": True, "depths": [1]} for c in (1, 1, 2)]
    summary = summarize_by_complexity(records, [True, False, True], ["a", "z", "a"], {"a"},
                                      ["<bos> a b <ans>", "<bos> a q <ans>", "<bos> b x y <ans>"], {"<bos>", "a", "b", "<ans>"})
    one, two = summary["per_complexity"][1], summary["per_complexity"][2]
    assert (one["untrained_answer_items"], one["untrained_prompt_items"], one["untrained_prompt_symbols"]) == (1, 1, ["q"])
    assert (two["untrained_answer_items"], two["untrained_prompt_items"], two["untrained_prompt_symbols"]) == (0, 1, ["x", "y"])
    assert summary["overall"]["untrained_prompt_share"] == pytest.approx(2 / 3)
    # DEPO trained on k = 1, 2: every prompt at k = 3 holds <hop=3>, which no training row holds; no seen prompt does
    data, _ = load_eval_data(tiny_depo_run)
    tokenizer = load_tokenizer("depo")
    read = trained_input_symbols(data["train"], tokenizer)
    assert "<hop=3>" not in read and "<hop=2>" in read
    report = evaluation_report(AutoModelForCausalLM.from_pretrained(tiny_depo_run), data, tokenizer, generate=False, resamples=10)
    unseen, seen = report["test_extrapolation"]["overall"], report["test_seen"]["overall"]
    assert unseen["untrained_prompt_share"] == 1.0 and "<hop=3>" in unseen["untrained_prompt_symbols"]
    # (64 training rows leave some node symbols unread too: those are counted, on both splits)
    for split, entry in (("test_extrapolation", unseen), ("test_seen", seen)):
        prompts = data[split]["prompt"]
        assert entry["untrained_prompt_symbols"] == sorted({s for p in prompts for s in p.split()} - read)
        assert entry["untrained_prompt_items"] == sum(not set(p.split()) <= read for p in prompts)
    assert not {"<hop=1>", "<hop=2>"} & set(seen["untrained_prompt_symbols"])


@pytest.mark.parametrize("name", ["anira-o-brevo", "anira-e-brevo"])
def test_depth_batched_generation_scores_the_same_rows_correct_as_generate(name, monkeypatch):
    """A shipped BREVO model on real test rows, seen and unseen sizes (right and wrong answers), fewer rows than
    prompts so that rows are refilled: depth-wise batched decoding marks exactly the rows generate() marks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from modeling_anira import DepthBatcher
    model, tokenizer = AutoModelForCausalLM.from_pretrained(ROOT / "hub_configs" / name), AutoTokenizer.from_pretrained(ROOT / "hub_configs" / name)
    data = build_dataset_dict(TaskSpec(task="brevo", train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8], num_train=64,
                                       num_validation=8, num_test_per_size=5))
    rows = data["test_seen"].to_list() + data["test_extrapolation"].to_list()
    plain = generated_correct(model, rows, tokenizer, batch_size=8)
    ticks = []
    step = DepthBatcher.step
    monkeypatch.setattr(DepthBatcher, "step", lambda self: ticks.append(1) or step(self))
    monkeypatch.setattr(type(model), "generate", lambda *args, **kwargs: pytest.fail("depth batching called generate()"))
    batched = generated_correct(model, rows, tokenizer, batch_size=8, depth_batching=True)
    assert batched == plain and ticks
    assert any(plain) and not all(plain), "the rows must hold right and wrong answers"


def test_evaluate_script_passes_depth_batching_to_the_generated_answers(tiny_depo_run, tmp_path, monkeypatch):
    import anira_study.evaluation as evaluation
    calls = []
    scored = evaluation.generated_correct
    monkeypatch.setattr(evaluation, "generated_correct", lambda *args, **kwargs: calls.append(args[3:]) or scored(*args, **kwargs))
    load_script("evaluate_models").main(["--models", str(tiny_depo_run), "--output_dir", str(tmp_path), "--splits",
                                         "test_seen", "--depth_batching", "true"])
    assert calls == [(64, True)]
