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
    first = run_experiment(ExperimentArguments(output_dir=str(tmp_path / "a"), study_dir=str(tmp_path / "study"), **TINY))
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
    assert report["study"]["status"] == "pending"  # no finished study run in study_dir: said, not invented


def test_the_wall_time_guard_is_reported_when_it_fires(tmp_path):
    arguments = ExperimentArguments(output_dir=str(tmp_path), parallel=False, max_train_minutes=0.001, **(TINY | {"max_steps": 10_000}))
    summary = run_experiment(arguments)
    fired = [line for line in summary["findings"] if line.startswith("NOTE") and "wall-time guard" in line]
    assert [line.split(":")[0] for line in fired] == [f"NOTE {name}" for name in summary["models"]]  # each model's
    assert all(model["steps"] < 10_000 for model in summary["models"].values())


def _short_run_report(accuracy: float) -> dict:
    per = {c: {"generated_accuracy": accuracy, "mean_depth": 2.0, "intervals": {"generated_accuracy": [0.0, 1.0]}} for c in (1, 2)}
    return {"test_seen": {"per_complexity": per, "spearman": 0.1}, "all": {"spearman": 0.1}}


def test_the_main_job_shows_the_study_first_or_says_it_is_pending(tmp_path, monkeypatch, capsys):
    """The printout and complexity.png open with the study's answer (seed 0 beside the seed range) when runs.json holds
    finished runs, and with a plain 'pending' (no numbers) when it does not; the job's short run comes after."""
    from types import SimpleNamespace

    from conftest import write_study_run

    from anira_study import figures
    from anira_study.findings import print_summary
    from anira_study.study_report import study_answer

    drawn = []
    monkeypatch.setattr(figures, "_save_figure", lambda fig, path: drawn.append(fig) or path)
    args = SimpleNamespace(task="depo", task_params="{}", train_sizes=[1, 2], extrapolation_sizes=[3], output_dir=str(tmp_path))
    reports = {"ANIRA-E": _short_run_report(0.25), "ANIRA-O": _short_run_report(0.35)}

    def show(study):
        summary = {"study": study, "models": {"ANIRA-E": {"parameters": 1, "steps": 6, "train_seconds": 1.0}},
                   "table": "SHORT-RUN TABLE", "findings": [], "shipped_table": None, "shipped_findings": [], "total_seconds": 1}
        print_summary(args, summary)
        figures.plot_main_job_complexity(study, reports, [1, 2], tmp_path / "complexity.png")
        return capsys.readouterr().out, drawn[-1].axes

    out, axes = show(study_answer("depo", tmp_path))
    assert out.index("pending") < out.index("SHORT-RUN TABLE") and "experiments/study/PROTOCOL.md" in out
    assert "pending" in axes[0].texts[0].get_text() and not axes[0].get_lines()  # no invented study curve
    short = {c.get_label(): list(c.lines[0].get_ydata()) for c in axes[-2].containers}
    assert short == {"ANIRA-E": [0.25, 0.25], "ANIRA-O": [0.35, 0.35]}  # the short run below
    for seed, accuracy in enumerate([0.9, 0.5, 0.7]):
        write_study_run(tmp_path, "depo", "anira-o", seed, {1: accuracy, 2: accuracy, 3: 0.1}, {1: 1.0, 2: 2.0, 3: 2.0})
    out, axes = show(study_answer("depo", tmp_path))
    assert out.index("| anira-o | 0.90 |") < out.index("SHORT-RUN TABLE")
    (line,) = [line for line in axes[0].get_lines() if not line.get_label().startswith("_")]
    assert line.get_label() == "anira-o seed 0" and list(line.get_ydata()) == [0.9, 0.9, 0.1]
    band = axes[0].collections[0].get_paths()[0].vertices
    assert (band[band[:, 0] == 1, 1].min(), band[band[:, 0] == 1, 1].max()) == (0.5, 0.9)  # the band spans every seed


def test_a_trained_folder_is_scored_only_on_the_prompts_and_sizes_it_was_trained_for(tmp_path):
    from anira_study.experiment import other_task

    args = ExperimentArguments(**TINY)
    params = json.loads(TINY["task_params"])

    def folder(name, task="depo", task_params=params, train_sizes=(1, 2)):
        path = tmp_path / name
        path.mkdir()
        train_args = ["--task", task, "--task_params", json.dumps(task_params),
                      "--train_sizes", *map(str, train_sizes), "--extrapolation_sizes", str(max(train_sizes) + 1)]
        (path / "recipe.json").write_text(json.dumps({"train_args": train_args}))
        return path

    assert other_task(args, folder("same")) is None
    # the same prompts written with every default spelled out are the same task
    assert other_task(args, folder("spelled", task_params={**params, "hop_format": "marker"})) is None
    assert other_task(args, folder("unary", task_params={**params, "hop_format": "unary"})).startswith("trained on other depo prompts")
    assert other_task(args, folder("sizes", train_sizes=(1, 2, 3))) == "trained on sizes [1, 2, 3], this job on [1, 2]"
    assert other_task(args, folder("brevo", task="brevo", task_params={}, train_sizes=(3, 4))) == "trained on brevo, not depo"
    no_recipe = tmp_path / "no-recipe"
    no_recipe.mkdir()
    assert other_task(args, no_recipe).startswith("its task parameters are unknown")


def test_the_main_job_runs_on_the_studys_depo_so_the_shipped_depo_folders_are_scored_beside_it(tmp_path):
    from anira_study import study
    from anira_study.experiment import other_task

    args = ExperimentArguments()
    data = study.training_args(args.study_grid, "anira-e", 0, tmp_path / "m", tmp_path / "o")  # the grid's chosen recipe
    assert args.study_grid == "depo-v8" and data[data.index("--task") + 1] == args.task
    assert float(data[data.index("--learning_rate") + 1]) == args.learning_rate
    assert json.loads(args.task_params) == json.loads(data[data.index("--task_params") + 1])
    sizes = data[data.index("--train_sizes") + 1:data.index("--extrapolation_sizes")]
    unseen = data[data.index("--extrapolation_sizes") + 1:data.index("--num_train")]  # the flags in the recipe's order
    assert args.train_sizes == [int(c) for c in sizes] and args.extrapolation_sizes == [int(c) for c in unseen]
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in ("anira-e-depo", "anira-o-depo", "anira-fixed-depo"):
        assert other_task(args, root / "hub_configs" / name) is None, name


def test_the_main_job_says_when_its_depo_prompts_show_solved_queries():
    """A DEPO whose six queries share k and show the earlier ones solved (the study's v1 data) gives part of the answer
    away: the main job's findings carry a NOTE saying so; its default (v8's data, the earlier answers hidden), one
    query per prompt, or another task, carries none."""
    import json

    from anira_study.experiment import ExperimentArguments
    from anira_study.findings import data_caveats
    from anira_study.study import GRIDS

    v1 = GRIDS["depo"]["data"]
    assert any("experiments/depo_leak" in line for line in data_caveats("depo", v1[v1.index("--task_params") + 1]))
    default = ExperimentArguments()
    assert data_caveats(default.task, default.task_params) == []
    single = json.dumps({**json.loads(default.task_params), "num_queries": 1, "supervise_all_queries": False})
    assert data_caveats("depo", single) == [] and data_caveats("brevo", "{}") == []
