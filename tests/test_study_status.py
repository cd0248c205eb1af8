"""`study.py status` (anira_study.study_status): each run's state and step, and the core-hours a grid still needs,
from runs.json, the training folders' checkpoints and the runner's lock."""

import os
import time

import pytest

from anira_study import study, study_runner, study_status
from anira_study.study_status import format_status, grid_status, run_pace, seconds_per_step


def test_the_pace_is_the_newest_stretch_one_process_wrote():
    # 100 s, then a wait of 4,900 s (resumed later), then 100 s and 120 s per 1,000 steps
    saved = [(1000, 0.0), (2000, 100.0), (3000, 5000.0), (4000, 5100.0), (5000, 5220.0)]
    assert seconds_per_step(saved) == pytest.approx(220 / 2000)
    assert seconds_per_step(saved[:2]) == pytest.approx(0.1)  # one interval: its own pace
    assert seconds_per_step(saved[:1]) is None and seconds_per_step([]) is None
    # the newest interval spans a wait (stopped after step 3,000 and resumed much later): the pace is the stretch before
    stopped = [(1000, 0.0), (2000, 100.0), (3000, 200.0), (4000, 5000.0)]
    assert seconds_per_step(stopped) == pytest.approx(0.1)
    # steady saves: every interval counts
    steady = [(s, 0.05 * s) for s in range(500, 5001, 500)]
    assert seconds_per_step(steady) == pytest.approx(0.05)


def test_a_resumed_run_is_paced_from_its_piece_never_across_its_interruption():
    """The piece under way (its start and pauses, as `study_parking` records them) times the saves it wrote; with one
    save of its own, the stretch before it counts, else that save from the piece's start (the resumed checkpoint's
    step): the interval from the last save before an interruption to the first after it is never a pace."""
    # 1,000 steps in 240 s, interrupted; resumed at t = 3,000 from checkpoint 1000, saved 2000 at t = 3,150
    before = [(1000, 240.0)]
    assert run_pace(before + [(2000, 3150.0)], {"started": 3000.0}) == pytest.approx(0.15)
    assert seconds_per_step(before + [(2000, 3150.0)]) == pytest.approx(2.91)  # what a pace across the wait would say
    # two saves in the piece, a 500 s pause between them: (100 s of work) / 1,000 steps, the startup left out
    piece = {"started": 3000.0, "pauses": [[3200.0, 3700.0]]}
    assert run_pace(before + [(2000, 3150.0), (3000, 3750.0)], piece) == pytest.approx(0.1)
    # one save in the piece and a stretch of saves before it: that stretch's pace (no startup in it)
    older = [(1000, 100.0), (2000, 200.0), (3000, 300.0)]
    assert run_pace(older + [(4000, 3300.0)], {"started": 3000.0}) == pytest.approx(0.1)
    # nothing saved in the piece: the saves before it; no piece (not training): the newest stretch
    assert run_pace(older, {"started": 3000.0}) == run_pace(older, None) == pytest.approx(0.1)
    assert run_pace([], {"started": 3000.0}) is None and run_pace(before, {"started": 3000.0}) is None
    # a run from scratch with one save: from the piece's start at step 0
    assert run_pace([(1000, 3200.0)], {"started": 3000.0}) == pytest.approx(0.2)


def finished_run(study_dir, task, model, seed, steps, seconds):
    folder = study_dir / task / "runs" / study.run_name(model, seed)
    folder.mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    study.record_run(task, {"run": study.run_name(model, seed), "model": model, "depth_mode": study.MODELS[model][0],
                            "max_depth": 6, "seed": seed, "steps": steps, "train_seconds": seconds,
                            "protocol_version": study.protocol_version(task), "quick": False, "machine": "test",
                            "commit": "0" * 40, "date": "2026-12-07 00:00 UTC",
                            "folder": f"runs/{study.run_name(model, seed)}"}, study_dir)


def training_folder(work_dir, task, name, saves, log_age):
    """Checkpoints at {step: seconds before now} and the run's log written `log_age` seconds ago."""
    now = time.time()
    for step, age in saves.items():
        path = work_dir / task / name / f"checkpoint-{step}"
        path.mkdir(parents=True)
        os.utime(path, (now - age, now - age))
    log = work_dir / task / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("training\n")
    os.utime(log, (now - log_age, now - log_age))


def test_a_grid_in_progress(tmp_path):
    study_dir, work_dir = tmp_path / "study", tmp_path / "work"
    finished_run(study_dir, "brevo", "fixed-6", 0, 40000, 4000.0)  # 0.1 s per step
    # anira-e seed 0: 30 s per 1,000 steps since it was resumed; its log written a minute ago
    training_folder(work_dir, "brevo", "anira-e-seed0", {1000: 20000, 2000: 90, 3000: 60, 4000: 30}, log_age=60)
    # anira-o seed 0: one checkpoint, log written two hours ago
    training_folder(work_dir, "brevo", "anira-o-seed0", {1000: 7200}, log_age=7200)

    idle = {r["run"]: r for r in grid_status("brevo", work_dir, study_dir)["runs"]}
    assert idle["anira-e-seed0"]["state"] == "stopped"  # no runner holds the grid's lock
    with study_runner.runner_lock(work_dir / "brevo" / study_runner.RUNNER_LOCK):
        status = grid_status("brevo", work_dir, study_dir)
    runs = {r["run"]: r for r in status["runs"]}
    assert status["max_steps"] == 40000 and status["finished"] == 1 and status["runner"] == str(os.getpid())
    assert len(runs) == len(study.grid_models("brevo")) * len(study.SEEDS)
    e, o = runs["anira-e-seed0"], runs["anira-o-seed0"]
    assert (e["state"], e["step"], e["pace_from"]) == ("training", 4000, "its checkpoints")
    assert e["seconds_per_step"] == pytest.approx(0.03, rel=1e-3)
    assert e["core_hours_left"] == pytest.approx(36000 * 0.03 / 3600, rel=1e-3)
    # a run with one checkpoint and an old log: stopped; no pace of its own, nor another anira-o's: the grid's finished
    assert (o["state"], o["step"], o["pace_from"]) == ("stopped", 1000, "every finished run")
    assert o["core_hours_left"] == pytest.approx(39000 * 0.1 / 3600)
    # not started: the same model's run under way first, then the model's finished runs
    assert runs["anira-e-seed1"]["state"] == "not started"
    assert runs["anira-e-seed1"]["pace_from"] == "its group's runs under way"
    assert runs["anira-e-seed1"]["core_hours_left"] == pytest.approx(40000 * 0.03 / 3600, rel=1e-3)
    assert runs["fixed-6-seed2"]["pace_from"] == "its group's finished runs"
    assert runs["fixed-6-seed0"]["state"] == "finished" and runs["fixed-6-seed0"]["step"] == 40000
    assert status["core_hours_left"] == pytest.approx(sum(r["core_hours_left"] for r in status["runs"]))

    text = format_status(status, processes=2)
    assert text.splitlines()[0].startswith("brevo (protocol v1): 1 of 15 runs finished, 1 training, 1 stopped, 12 not started")
    assert f"about {status['core_hours_left']:.1f} core-hours left ({status['core_hours_left'] / 2:.1f} h on 2 processes)" in text
    assert "| anira-e-seed0 | training | 4000 | 40000 | 120,000 | 0.30 |" in text
    assert "| anira-o-seed0 | stopped | 1000 | 40000 | 36,000 (est.) | 1.08 |" in text


def test_a_grid_whose_search_has_not_chosen_shows_its_search_first(tmp_path):
    from test_study_search import choose

    from anira_study import study_search

    work_dir, study_dir = tmp_path / "work", tmp_path / "study"
    # the search's first candidate recorded (its steps and seconds), the second training since it was resumed
    first, second, third = [f"{c}-default" for c in study.SEARCHES["depo-v8"]["candidates"]]
    entry = {"candidate": "single-curriculum", "variant": "default", "recipe": study_search._recipe_record("depo-v8", "single-curriculum", "default"),
             "validation": {"1": {"exact": 0.5, "prompts": 10, "interval": [0.2, 0.8]}}, "steps": 15000, "train_seconds": 3000.0}
    study_search.record_search("depo-v8", entry, study_dir)
    base = work_dir / "depo-v8" / "search"
    training_folder(base.parent, "search", second, {1000: 500, 2000: 300, 3000: 100}, log_age=10)
    with study_runner.runner_lock(base / study_runner.RUNNER_LOCK):
        status = grid_status("depo-v8", work_dir, study_dir)
    assert status["max_steps"] is None and status["core_hours_left"] is None and status["finished"] == 0
    assert all(r["state"] == "not started" and r["core_hours_left"] is None for r in status["runs"])
    search = {r["run"]: r for r in status["search"]["runs"]}
    assert status["search"]["finished"] == 1 and status["search"]["choice"] is None
    assert search[first]["state"] == "finished" and search[first]["seconds_per_step"] == pytest.approx(0.2)
    assert (search[second]["state"], search[second]["step"], search[second]["budget"]) == ("training", 3000, 15000)
    assert search[second]["core_hours_left"] == pytest.approx(12000 * 0.2 / 3600, rel=1e-3)  # its own 200 s per 1,000
    assert search[third]["pace_from"] == "its group's runs under way"  # the same model as the run under way
    text = format_status(status, 2)
    assert text.index("depo-v8 search (protocol v8): 1 of 3 runs finished, 1 training, 0 stopped, 1 not started") \
        < text.index("depo-v8 (protocol v8): 0 of 21 runs finished")
    assert "core-hours left unknown (the grid's search has not chosen its recipe); no runner" in text
    choose("depo-v8", study_dir)  # once the search has chosen, the grid's budget is the choice's and the search is gone
    chosen = grid_status("depo-v8", work_dir, study_dir)
    choice = study_search.searched_choice("depo-v8", study_dir)
    assert "search" not in chosen and chosen["max_steps"] == study_search.candidate_steps("depo-v8", choice)


def test_the_status_command(tmp_path, capsys):
    from conftest import load_script

    finished_run(tmp_path / "study", "depo", "fixed-1", 2, 15000, 1500.0)
    statuses = load_script("study").main(["status", "--task", "depo", "brevo", "--study_dir", str(tmp_path / "study"),
                                          "--work_dir", str(tmp_path / "work"), "--processes", "3"])
    assert [s["name"] for s in statuses] == ["depo", "brevo"]
    out = capsys.readouterr().out
    assert "depo (protocol v1): 1 of 15 runs finished" in out and "h on 3 processes" in out
    assert "brevo (protocol v1): 0 of 15 runs finished, 0 training, 0 stopped, 15 not started; core-hours left unknown" in out
    # depo: every other run estimated from fixed-1-seed2's 0.1 s per step
    assert statuses[0]["core_hours_left"] == pytest.approx(14 * 15000 * 0.1 / 3600)


def test_a_grid_whose_search_chose_below_the_bar_says_its_runs_wait(tmp_path):
    from test_study_search import record

    study_dir = tmp_path / "study"
    for candidate in study.SEARCHES["depo-v8"]["candidates"]:
        record("depo-v8", study_dir, candidate, "default", {1: 0.5, 2: 0.2})
    status = grid_status("depo-v8", tmp_path / "work", study_dir)
    assert "below the bar" in status["waits"] and status["max_steps"] == 15000
    assert "Its runs do not start: its search chose single-curriculum below the bar" in format_status(status, 2)
    record("depo-v8", study_dir, "single-curriculum", "default", {1: 0.95, 2: 0.9})  # passing: nothing waits
    assert grid_status("depo-v8", tmp_path / "work", study_dir)["waits"] is None


def test_a_withdrawn_grid_and_search_say_so_in_place_of_the_hours_left(tmp_path):
    from test_study_search import record

    study_dir = tmp_path / "study"
    record("depo-v7", study_dir, "single-curriculum", "default", {1: 0.83, 2: 0.33})  # what v7 recorded stays shown
    search = format_status(study_status.search_status("depo-v7", tmp_path / "work", study_dir), 2)
    grid = format_status(grid_status("depo-v8", tmp_path / "work", study_dir), 2)
    withdrawn = format_status(grid_status("depo-v7", tmp_path / "work", study_dir), 2)
    assert search.startswith("depo-v7 search (protocol v7): 1 of 3 runs finished") and "| single-curriculum-default | finished |" in search
    heads = [line for line in (search + "\n" + withdrawn).split("\n") if line.startswith("depo-v7")]
    assert len(heads) == 3  # the search's, the grid's own search shown first, the grid's
    assert all("withdrawn by protocol v8" in head and "core-hours" not in head for head in heads)
    assert "withdrawn" not in grid and "core-hours left" in grid


def test_the_status_of_a_resumed_run_reads_its_piece(tmp_path):
    """A run resumed 330 s ago from checkpoint 1000 (saved long before), checkpoint 2000 saved 30 s ago: 0.3 s per step,
    not the 5,000 s between its two checkpoints."""
    import json

    from anira_study.study_parking import PIECE_FILE

    study_dir, work_dir = tmp_path / "study", tmp_path / "work"
    training_folder(work_dir, "brevo", "fixed-3-seed0", {1000: 5000, 2000: 30}, log_age=10)
    (work_dir / "brevo" / "fixed-3-seed0" / PIECE_FILE).write_text(json.dumps({"started": time.time() - 330, "pid": 1}))
    with study_runner.runner_lock(work_dir / "brevo" / study_runner.RUNNER_LOCK):
        run = {r["run"]: r for r in grid_status("brevo", work_dir, study_dir)["runs"]}["fixed-3-seed0"]
    assert (run["state"], run["pace_from"]) == ("training", "its checkpoints")
    assert run["seconds_per_step"] == pytest.approx(0.3, rel=1e-2)
