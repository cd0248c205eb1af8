"""User mistakes in the example scripts end with one line that names them, before any work is done."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = "hidden_size=32,intermediate_size=64,num_attention_heads=4,num_core_layers=1,max_depth=3"




def train_argv(output_dir, *extra) -> list[str]:
    return ["--model_name_or_path", str(ROOT / "hub_configs/anira-o-depo"), "--from_scratch", "true", "--config_overrides", TINY, "--task", "depo",
            "--train_sizes", "1", "2", "--extrapolation_sizes", "3", "--task_params", '{"num_nodes": 4}', "--num_train", "64",
            "--num_validation", "4", "--num_test_per_size", "4", "--output_dir", str(output_dir), "--per_device_train_batch_size", "8",
            "--max_steps", "2", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true",
            "--probe_steps", "1", "--probe_per_size", "2", *extra]


@pytest.mark.parametrize("extra, message", [
    (["--compute_penalty", "-1"], "--compute_penalty"),
    (["--penalty_gate_accuracy", "1.5"], "--penalty_gate_accuracy"),
    (["--task_params", "{num_nodes: 4"], "--task_params is not valid JSON"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size"),
    (["--max_steps", "-5"], "--max_steps"),
    (["--config_overrides", "max_depth=0"], "max_depth"),
    (["--resume_from_checkpoint", "last"], "no checkpoint"),
    (["--recurrence", "sparse"], "--recurrence"),
    (["--train_size_weights", "1,2,3"], "--train_size_weights has 3 values for the 2 --train_sizes"),
    (["--train_size_weights", "1,0"], "--train_size_weights must be finite and > 0"),
    (["--train_size_weights", "1;2"], "--train_size_weights must be comma-separated numbers"),
    (["--curriculum_metric", "exact_match"], r"--curriculum_metric must be one of \['token_accuracy', 'answer_exact'\], got 'exact_match'"),
    (["--num_proc", "0"], "--num_proc must be >= 1, got 0"),
])
def test_train_refuses_bad_arguments_before_training(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        load_script("train").main(train_argv(tmp_path / "run", *extra))
    assert not (tmp_path / "run" / "probe_log.jsonl").exists()  # nothing ran


def test_train_refuses_a_folder_that_holds_a_finished_run_unless_told_to_overwrite(tmp_path):
    train = load_script("train")
    train.main(train_argv(tmp_path / "run"))
    first_log = (tmp_path / "run" / "probe_log.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run"):
        train.main(train_argv(tmp_path / "run"))
    assert (tmp_path / "run" / "probe_log.jsonl").read_text() == first_log
    train.main(train_argv(tmp_path / "run", "--overwrite_output_dir", "true"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "probe_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # the new run's log only, never two runs mixed


def test_evaluate_and_generate_name_the_problem(tmp_path):
    evaluate = load_script("evaluate_models")
    with pytest.raises(ValueError, match="does not exist"):
        evaluate.main(["--models", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "report.json").exists()
    folder = ROOT / "hub_configs/anira-o-depo"
    with pytest.raises(ValueError, match="--splits"):
        evaluate.main(["--models", str(folder), "--splits", "test_unseen", "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="--batch_size"):
        evaluate.main(["--models", str(folder), "--batch_size", "0", "--output_dir", str(tmp_path / "out")])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    (broken / "tokenizer.json").write_text("{not json")
    generate = load_script("generate")
    with pytest.raises(ValueError, match="tokenizer.json is corrupt"):
        generate.main(["--model", str(broken), "--prompt", "<bos> v1"])
    with pytest.raises(ValueError, match="--prompt is empty"):
        generate.main(["--model", str(folder), "--prompt", "  "])


def test_a_user_mistake_is_one_line_and_exit_status_2():
    result = subprocess.run([sys.executable, str(ROOT / "examples/evaluate_models.py"), "--models", "/nonexistent/model"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["evaluate_models.py: error: model folder '/nonexistent/model' does not exist"]


def test_overrides_that_do_not_fit_a_trained_folder_ask_for_from_scratch(tmp_path):
    argv = train_argv(tmp_path / "run")
    argv.remove("--from_scratch")
    argv.remove("true")
    with pytest.raises(ValueError, match="--from_scratch true"):
        load_script("train").main(argv)


def test_train_refuses_a_tokenizer_of_another_family_than_the_task(tmp_path):
    """hub_configs/anira-o-mano's tokenizer would read DEPO's data as MANO symbols (`v29` as `8`)."""
    argv = train_argv(tmp_path / "run")
    argv[argv.index("--model_name_or_path") + 1] = str(ROOT / "hub_configs/anira-o-mano")
    with pytest.raises(ValueError, match=r"anira-o-mano holds the 'mano' family's tokenizer, but --task depo is a 'depo' "
                                         r"task \(it lacks \d+ of its symbols"):
        load_script("train").main(argv)
    assert not (tmp_path / "run" / "probe_log.jsonl").exists()  # nothing ran


def test_train_names_a_missing_model_folder_and_a_corrupt_tokenizer_file(tmp_path):
    train = load_script("train")
    argv = train_argv(tmp_path / "run")
    argv[argv.index("--model_name_or_path") + 1] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="--model_name_or_path '.*missing': no such folder"):
        train.main(argv)
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((ROOT / "hub_configs/anira-o-depo" / name).read_bytes())
    argv[argv.index("--model_name_or_path") + 1] = str(folder)
    for name, text, message in (("tokenizer_config.json", "{oops", "tokenizer_config.json is corrupt"),
                                ("tokenizer.json", '{"model": 1}', "tokenizer.json is corrupt: not a tokenizers file")):
        (folder / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            train.main(argv)
        (folder / name).write_bytes((ROOT / "hub_configs/anira-o-depo" / name).read_bytes())
    assert not (tmp_path / "run" / "probe_log.jsonl").exists()


@pytest.mark.parametrize("extra, message", [
    (["--max_steps", "-5"], "--max_steps must be >= 1, got -5"),
    (["--task", "bogus"], "--task must be one of"),
    (["--task_params", "{num_nodes: 4"], "--task_params is not valid JSON"),
    (["--train_sizes", "1", "2", "3", "--extrapolation_sizes", "3", "4"], "extrapolation_sizes must be above the largest training size 3"),
    (["--model_overrides", "num_core_layers=1000000"], "num_core_layers"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size"),
])
def test_experiment_refuses_bad_arguments_before_any_work(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        load_script("experiment").main(["--output_dir", str(tmp_path / "out"), *extra])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--task", "bogus"], "--task must be one of"),
    (["--task", "depo", "--num_train", "0"], "num_train must be >= 1, got 0"),
    (["--task", "depo", "--train_sizes", "1", "2", "--extrapolation_sizes", "2", "3"],
     "extrapolation_sizes must be above the largest training size 2"),
    (["--task", "depo", "--task_params", "{bad"], "--task_params is not valid JSON"),
    (["--task", "depo", "--task_params", "[1]"], "--task_params must be a JSON object"),
    (["--task", "depo", "--num_proc", "0"], "--num_proc must be >= 1, got 0"),
])
def test_make_datasets_refuses_bad_arguments_before_any_work(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        load_script("make_datasets").main([*extra, "--output_dir", str(tmp_path / "data")])
    assert not (tmp_path / "data").exists()


def test_analyze_help_prints_the_usage(capsys):
    analyze = load_script("analyze")
    for flag in ("--help", "-h"):
        with pytest.raises(SystemExit) as exit_info:
            analyze.main([flag])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: analyze.py {dynamics,importance,depth-need}") and "depth-need" in out
    with pytest.raises(ValueError, match=r"must be a command, one of \['dynamics', 'importance', 'depth-need'\]"):
        analyze.main([])


@pytest.mark.parametrize("script, args, status, line", [
    ("analyze.py", ["--help"], 0, None),
    ("experiment.py", ["--task", "bogus"], 2, "experiment.py: error: --task must be one of"),
    ("make_datasets.py", ["--task", "depo", "--task_params", "{bad"], 2, "make_datasets.py: error: --task_params is not valid JSON"),
    ("train.py", ["--model_name_or_path", "hub_configs/anira-o-depo", "--task", "depo", "--output_dir", "run"], 2,
     "train.py: error: --model_name_or_path 'hub_configs/anira-o-depo': no such folder (relative to the current folder"),
])
def test_scripts_run_from_outside_the_repository_end_in_one_line(tmp_path, script, args, status, line):
    """Each script as a user runs it, from another folder: the exit status and the one line, no traceback."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == status, result.stderr[-2000:]
    if line is None:
        assert result.stdout.startswith("usage: analyze.py")
    else:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(line), result.stderr[-2000:]
    assert not (tmp_path / "run").exists()
