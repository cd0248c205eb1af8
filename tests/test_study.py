"""The replicated study's machinery (anira_study.study): the frozen grids, one run end to end, runs.json and the
runners."""

import json
import os

import pytest
from conftest import fake_study_processes

from anira_study import study, study_findings, study_report, study_runner


def recipe_only(argv: list[str]) -> list[str]:
    """A run's arguments without how it executes (protocol v5's compiled forward)."""
    if "--compile_model" not in argv:
        return argv
    at = argv.index("--compile_model")
    return argv[:at] + argv[at + 2:]


def test_every_model_of_a_grid_trains_on_the_same_data_and_schedule(tmp_path):
    from test_study_search import choose

    for search in study.SEARCHES:  # the searched grids: once their search has chosen (synthetic validation numbers)
        choose(search, tmp_path)
    for task in study.GRIDS:
        argvs = {model: recipe_only(study.training_args(task, model, 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path))
                 for model in study.grid_models(task)}
        adaptive = [a for m, a in argvs.items() if study.MODELS[m][0] != "fixed"]
        fixed = [a for m, a in argvs.items() if study.MODELS[m][0] == "fixed"]
        assert all(a == adaptive[0] for a in adaptive) and all(a == fixed[0] for a in fixed)
        assert adaptive[0] == fixed[0] + study.ADAPTIVE_ARGS  # only the penalty schedule differs
        assert "--resume_from_checkpoint" not in fixed[0] and "--seed" in fixed[0]


def test_a_grid_trains_its_own_models_and_refuses_others(tmp_path):
    """v1's grids train the five models of V1_MODELS; DEPO v6 adds ANIRA-E and ANIRA-O with the paper's objective,
    which differ from their pair in the iteration loss alone; a model outside a grid is refused by name."""
    assert study.grid_models("depo") == study.grid_models("brevo") == list(study.V1_MODELS)
    assert study.grid_models("depo-v6") == [*study.V1_MODELS, "anira-e-paper", "anira-o-paper"]
    for paper, pair in (("anira-e-paper", "anira-e"), ("anira-o-paper", "anira-o")):
        a, b = (study.model_config("depo-v6", m)[0].to_dict() for m in (paper, pair))
        assert {k for k in a if a[k] != b.get(k)} == {"iteration_loss_weight"}
        assert (a["iteration_loss_weight"], b["iteration_loss_weight"], a["compute_penalty"]) == (0.0, 0.5, 0.003)
    _, missing = study.grid_state("depo-v6", tmp_path)
    assert len(missing) == 7 * len(study.SEEDS) and {m["model"] for m in missing} >= {"anira-o-paper"}
    with pytest.raises(ValueError, match=r"the brevo grid's models are \['anira-e', .*not \['anira-o-paper'\]"):
        study.run_grids(["brevo"], ["anira-o-paper"], [0], tmp_path / "w", tmp_path)
    with pytest.raises(ValueError, match=r"the depo grid's models are .*not 'anira-e-paper'"):
        study.training_args("depo", "anira-e-paper", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)


def test_runs_train_compiled_except_those_started_before_and_quick_ones(tmp_path):
    """Protocol v5: full runs pass --compile_model true, except every DEPO run and BREVO's anira-e and anira-o of seed
    0 (started before it) and quick runs."""
    from test_study_search import choose

    from anira_study import study_search

    for search in study.SEARCHES:
        choose(search, tmp_path)
        choose(search, tmp_path, quick=True)
    eager = {("depo", model, seed) for model in study.MODELS for seed in study.SEEDS}
    eager |= {("brevo", "anira-e", 0), ("brevo", "anira-o", 0)}
    for task in study.GRIDS:
        for model in study.grid_models(task):
            for seed in study.SEEDS:
                for quick in (False, True):
                    argv = study.training_args(task, model, seed, tmp_path / "m", tmp_path / "o", quick=quick, study_dir=tmp_path)
                    compiled = not quick and (task, model, seed) not in eager
                    value = argv[argv.index("--compile_model") + 1] if "--compile_model" in argv else "false"
                    assert argv.count("--compile_model") <= 1 and value == str(compiled).lower(), (task, model, seed, quick)
    for search, spec in study.SEARCHES.items():
        candidate, variant = next(iter(spec["candidates"])), next(iter(spec["variants"]))
        argv = study_search.search_args(search, candidate, variant, tmp_path / "m", tmp_path / "o")
        assert argv[argv.index("--compile_model") + 1] == "true"
        quick = study_search.search_args(search, candidate, variant, tmp_path / "m", tmp_path / "o", quick=True)
        assert quick.count("--compile_model") == 1 and quick[quick.index("--compile_model") + 1] == "false"


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
    report = study_report.study_report("depo", tmp_path / "study", quick=True)
    assert report["models"]["fixed-1"]["pooled_seen_accuracy"]["seeds"] == 1
    assert "| fixed-1 | 0 |" in (tmp_path / "study" / "depo" / "results-quick.md").read_text()
    drawn = study_report.study_figures("depo", tmp_path / "study", quick=True)  # the figures read what a real run records
    model = drawn["curves"]["models"]["fixed-1"]
    assert drawn["curves"]["finished"] == ["fixed-1-seed0"] and len(drawn["missing"]) == 14
    assert set(model["oracle_depth"]) == set(model["accuracy"]) == {1, 2, 3, 4, 5, 6}
    assert model["dynamics"]["steps"][-1] == steps and all(p.name.endswith("-quick.png") for p in drawn["paths"])
    with pytest.raises(ValueError, match="no runs of protocol"):
        study_report.study_report("brevo", tmp_path / "study")


def test_a_training_folder_of_another_recipe_is_neither_resumed_nor_taken_as_finished(tmp_path):
    """A quick run's folder where the real run would train (the same work folder) is refused, finished or not,
    naming the arguments that differ; the same recipe from other paths resumes."""
    study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "work", tmp_path / "study", quick=True)
    output_dir = tmp_path / "work" / "depo" / "fixed-1-seed0"
    real = study.training_args("depo", "fixed-1", 0, tmp_path / "configs", output_dir)
    with pytest.raises(ValueError, match=r"holds a run trained with other arguments \(differing: .*--max_steps 15000"):
        study._train_resumable(real, output_dir)
    assert study.recipe_of(real) != json.loads((output_dir / "study_args.json").read_text())
    quick = study.training_args("depo", "fixed-1", 0, tmp_path / "elsewhere" / "configs", output_dir, quick=True)
    study._train_resumable(quick, output_dir)  # finished, same recipe: nothing to do, no error


def test_quick_runs_train_in_their_own_work_folder_by_default(tmp_path, monkeypatch):
    from conftest import load_script

    script = load_script("study")
    asked = []
    monkeypatch.setattr(script, "run_grids", lambda tasks, models, seeds, work_dir, *rest: asked.append(work_dir) or [])
    script.main(["run", "--task", "depo", "--quick", "--study_dir", str(tmp_path)])
    script.main(["run", "--task", "depo", "--study_dir", str(tmp_path)])
    assert asked == ["outputs/study-quick/work", "outputs/study"]


def test_a_brevo_run_of_an_adaptive_model_reports_finding_3s_feature_shares_on_seen_sizes(tmp_path):
    summary = study.train_and_evaluate("brevo", "anira-o", 0, tmp_path / "work", tmp_path / "study", quick=True)
    shares = summary["feature_importance"]["all_tokens"]["share"]
    assert set(shares) == {"static", "execution_state"}
    assert "records" not in summary["report"]["test_seen"]
    numbers = study_findings.run_numbers(summary)
    assert numbers["execution_state_share_all_tokens"] == pytest.approx(shares["execution_state"], nan_ok=True)


def test_the_grid_runs_pending_runs_several_at_a_time_one_thread_each_and_more_per_gpu(tmp_path, monkeypatch):
    """run_grid launches `study.py one` per pending (model, seed), at most `processes` at once: by default one per
    core on CPU and four sharing a GPU, each with one OpenMP thread."""
    import threading

    import torch

    launched, running, peak, lock = [], [0], [0], threading.Lock()

    def fake_run(command, env, process):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        launched.append((command, env["OMP_NUM_THREADS"]))
        import time
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return 0

    fake_study_processes(monkeypatch, fake_run)
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


def _hold_runner_lock(path, ready, release):
    with study_runner.runner_lock(path):
        ready.set()
        release.wait(30)


def test_a_second_runner_of_the_same_grid_is_refused_while_the_first_runs(tmp_path):
    """Two `study.py run` of one grid in one work folder would train the same runs into the same checkpoints: the
    second is refused, naming the first's process, and runs once the first has ended."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    path = tmp_path / "depo" / study_runner.RUNNER_LOCK
    holder = context.Process(target=_hold_runner_lock, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RuntimeError, match=f"another runner \\(process {holder.pid}\\)"):
            with study_runner.runner_lock(path):
                pass
    finally:
        release.set()
        holder.join(30)
    with study_runner.runner_lock(path):  # free again
        assert path.read_text().strip() == str(os.getpid())


def test_run_takes_several_grids_and_names_a_failed_run_with_its_grid(tmp_path, monkeypatch):
    """`study.py run --task depo brevo` hands both grids to one queue (so one command keeps a machine busy across
    both), and names a failed run with its grid."""
    from conftest import load_script

    script = load_script("study")
    asked = []

    def fake_grids(tasks, models, seeds, work_dir, study_dir, processes, quick):
        asked.append(list(tasks))
        assert models is None  # every model of each grid
        return [(task, model, seed, 1 if (task, model, seed) == ("brevo", "fixed-1", 2) else 0)
                for task in tasks for model in study.grid_models(task) for seed in seeds]

    monkeypatch.setattr(script, "run_grids", fake_grids)
    with pytest.raises(SystemExit, match=r"failed runs .*: brevo/fixed-1-seed2$"):
        script.main(["run", "--task", "depo", "brevo", "--study_dir", str(tmp_path), "--work_dir", str(tmp_path / "w")])
    assert asked == [["depo", "brevo"]]


def test_several_grids_share_one_pool_so_the_next_grid_starts_while_the_last_run_of_the_first_trains(tmp_path, monkeypatch):
    """With two processes, DEPO's slow last run does not hold BREVO back: BREVO's runs start on the free process
    while it trains; the runs still start grid after grid, seed-major, each logged under its own grid."""
    import time

    started, ended = {}, {}

    def fake_run(command, env, process):
        name = (command[command.index("--task") + 1], command[command.index("--seed") + 1])
        started[name] = time.monotonic()
        time.sleep({("depo", "1"): 0.3, ("depo", "2"): 1.0}.get(name, 0.05))  # depo 2 starts when depo 0 ends
        ended[name] = time.monotonic()
        return 0

    fake_study_processes(monkeypatch, fake_run)
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
    assert "| anira-o | 0 |" in results and "| anira-o | 1 |" not in results
    assert results.startswith("# depo: protocol v1, 1 of 15 runs\n") and "still to come: anira-e-seed0, " in results
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
