"""Parked checkpoints (anira_study.study_parking): an unfinished run's newest checkpoint kept in the repository,
resumed from on a machine without the run's training folder, cleared when the run lands."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import torch
from conftest import load_script
from safetensors.torch import load_file

from anira_study import study
from anira_study.study_parking import (LANDED_FILE, PIECE_FILE, WALL_TIMES_FILE, park, park_run, parked_folder,
                                       pause_runs, piece_seconds, resume_runs, unpark, wall_times)
from anira_study.study_status import format_status, grid_status


def checkpoint(folder, step, complete=True, saved_ago=0.0):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights %d" % step)
    (path / "modeling_anira.py").write_text("# the package's code, copied by save_pretrained\n")
    if complete:  # the trainer writes trainer_state.json last
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        os.utime(path / "trainer_state.json", (time.time() - saved_ago,) * 2)
    return path


def test_park_copies_the_newest_complete_checkpoint_with_the_side_files_and_the_piece_under_way(tmp_path):
    run = tmp_path / "work" / "brevo" / "anira-e-seed2"
    checkpoint(run, 1000, saved_ago=300)
    checkpoint(run, 2000, saved_ago=100)
    checkpoint(run, 3000, complete=False)  # being written
    (run / "probe_log.jsonl").write_text('{"step": 2200}\n')
    (run / "training_commits.json").write_text('[{"training_commit": "abc"}]')
    (run / WALL_TIMES_FILE).write_text("[500.0]")  # an earlier piece
    (run / PIECE_FILE).write_text(json.dumps({"started": time.time() - 1000}))  # the piece under way

    target = parked_folder(run, tmp_path / "work", tmp_path / "study")
    assert target == tmp_path / "study" / "parked" / "brevo" / "anira-e-seed2"
    assert park_run(run, target) == target / "checkpoint-2000"
    assert sorted(p.name for p in target.iterdir()) == ["checkpoint-2000", "probe_log.jsonl", "training_commits.json",
                                                         WALL_TIMES_FILE]
    earlier, piece = json.loads((target / WALL_TIMES_FILE).read_text())
    assert earlier == 500.0 and abs(piece - 900) < 5  # started 1,000 s ago, its checkpoint saved 100 s ago

    fresh = tmp_path / "elsewhere" / "anira-e-seed2"  # a machine without the training folder
    assert unpark(target, fresh) == fresh / "checkpoint-2000"
    assert (fresh / "checkpoint-2000" / "model.safetensors").read_bytes() == b"weights 2000"
    assert not list(target.glob("**/*.py"))  # no copies of the package's code in the repository
    assert json.loads((fresh / WALL_TIMES_FILE).read_text()) == [earlier, piece]
    assert (fresh / "probe_log.jsonl").read_text() == '{"step": 2200}\n'
    assert unpark(target, run) is None  # a folder with checkpoints of its own keeps them
    assert not (run / "checkpoint-2000" / "training_commits.json").exists()


def test_park_takes_every_unlanded_run_and_clears_the_landed(tmp_path):
    work, study_dir = tmp_path / "work", tmp_path / "study"
    checkpoint(work / "brevo" / "fixed-1-seed1", 5000)
    checkpoint(work / "depo-v6" / "search" / "mixed-default", 3000)
    landed = work / "brevo" / "fixed-3-seed1"
    checkpoint(landed, 40000)
    checkpoint(study_dir / "parked" / "brevo" / "fixed-3-seed1", 39000)  # parked before it landed
    (landed / LANDED_FILE).write_text("{}")
    checkpoint(work / "brevo" / "anira-o-seed2", 1000, complete=False)  # nothing complete: nothing to park

    parked = park(work, study_dir)
    assert sorted(str(p.relative_to(study_dir / "parked")) for p in parked) == [
        "brevo/fixed-1-seed1/checkpoint-5000", "depo-v6/search/mixed-default/checkpoint-3000"]
    assert not (study_dir / "parked" / "brevo" / "fixed-3-seed1").exists()
    assert not (study_dir / "parked" / "brevo" / "anira-o-seed2").exists()
    checkpoint(work / "brevo" / "fixed-1-seed1", 6000)
    park(work, study_dir)  # parking again replaces the older copy
    assert [p.name for p in (study_dir / "parked" / "brevo" / "fixed-1-seed1").glob("checkpoint-*")] == ["checkpoint-6000"]

    status = grid_status("brevo", tmp_path / "fresh-work", study_dir)  # a machine with no training folders
    runs = {r["run"]: r for r in status["runs"]}
    assert (runs["fixed-1-seed1"]["state"], runs["fixed-1-seed1"]["step"]) == ("parked", 6000)
    assert runs["fixed-3-seed1"]["state"] == "not started"
    assert ", 1 parked, " in format_status(status, processes=2).splitlines()[0]


def test_a_parked_run_resumes_on_a_fresh_machine_to_the_same_weights_and_clears_its_copy_when_it_lands(tmp_path):
    straight = study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "work", tmp_path / "study", quick=True)
    # the same run interrupted after its first save (step 15 of 30) on another machine, parked, that machine gone
    interrupted = tmp_path / "other-work" / "depo" / "fixed-1-seed0"
    interrupted.mkdir(parents=True)
    shutil.copytree(tmp_path / "work" / "depo" / "fixed-1-seed0" / "checkpoint-15", interrupted / "checkpoint-15")
    (interrupted / WALL_TIMES_FILE).write_text("[7.0]")
    (interrupted / "training_commits.json").write_text('[{"training_commit": "parked piece"}]')
    resumed_study = tmp_path / "resumed-study"
    assert [p.name for p in park(tmp_path / "other-work", resumed_study)] == ["checkpoint-15"]
    shutil.rmtree(tmp_path / "other-work")

    resumed = study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "new-work", resumed_study, quick=True)
    output_dir = tmp_path / "new-work" / "depo" / "fixed-1-seed0"
    assert resumed["steps"] == straight["steps"] == 30
    assert resumed["training_commits"][0] == {"training_commit": "parked piece"} and len(resumed["training_commits"]) == 2
    assert resumed["train_seconds"] > 7.0 and json.loads((output_dir / WALL_TIMES_FILE).read_text())[0] == 7.0
    assert (output_dir / "checkpoint-15").exists()  # the parked checkpoint, which it resumed from
    weights = load_file(resumed_study / "depo" / "runs" / "fixed-1-seed0" / "model.safetensors")
    expected = load_file(tmp_path / "study" / "depo" / "runs" / "fixed-1-seed0" / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(torch.allclose(weights[k], expected[k], atol=1e-6) for k in weights)  # resumed = uninterrupted
    assert not (resumed_study / "parked").exists() and (output_dir / LANDED_FILE).exists()
    assert park(tmp_path / "new-work", resumed_study) == [] and not (resumed_study / "parked").exists()


def test_an_interrupted_piece_counts_up_to_its_last_save_when_the_run_resumes_in_its_own_folder(tmp_path):
    """A runner killed mid-piece (a restart, the end of a session) leaves the piece's time unrecorded; resuming in the
    same folder records it up to the checkpoint it resumes from, as parking would have, and then its own piece."""
    study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "work", tmp_path / "study", quick=True)
    interrupted = tmp_path / "again" / "depo" / "fixed-1-seed0"
    interrupted.mkdir(parents=True)
    shutil.copytree(tmp_path / "work" / "depo" / "fixed-1-seed0" / "checkpoint-15", interrupted / "checkpoint-15")
    saved_at = time.time() - 100
    os.utime(interrupted / "checkpoint-15" / "trainer_state.json", (saved_at,) * 2)
    (interrupted / WALL_TIMES_FILE).write_text("[7.0]")
    (interrupted / PIECE_FILE).write_text(json.dumps({"started": saved_at - 40}))  # killed 100 s after its last save
    assert wall_times(interrupted) == [7.0, 40.0]
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / PIECE_FILE).write_text(json.dumps({"started": saved_at}))  # killed before any save
    assert wall_times(tmp_path / "bare") == []

    resumed = study.train_and_evaluate("depo", "fixed-1", 0, tmp_path / "again", tmp_path / "study-again", quick=True)
    times = json.loads((interrupted / WALL_TIMES_FILE).read_text())
    assert times[:2] == [7.0, 40.0] and len(times) == 3 and not (interrupted / PIECE_FILE).exists()
    assert resumed["train_seconds"] == sum(times)


def test_a_piece_s_time_leaves_out_the_part_of_each_pause_within_it(tmp_path):
    piece = {"started": 100.0, "pauses": [[90.0, 110.0], [150.0, 160.0], [190.0, None]]}
    assert piece_seconds(piece, 200.0) == 100.0 - 10.0 - 10.0 - 10.0  # the first pause from the start, the last to the end
    assert piece_seconds(piece, 155.0) == 55.0 - 10.0 - 5.0  # a pause after `end` does not count
    assert piece_seconds({"started": 100.0}, 130.0) == 30.0
    run = tmp_path / "run"
    checkpoint(run, 1000, saved_ago=100.0)  # saved 100 s ago; paused for 60 s of the 500 s before it
    started = time.time() - 600.0
    (run / PIECE_FILE).write_text(json.dumps({"started": started, "pid": 1, "pauses": [[started + 10, started + 70]]}))
    assert wall_times(run) == pytest.approx([440.0], abs=0.1)


def process_state(pid, awaited=None):
    """The process's state letter (T: stopped); with `awaited`, after waiting up to 5 s for it (signals land
    asynchronously)."""
    deadline = time.time() + 5
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if awaited is None or (state == "T") == (awaited == "T") or time.time() > deadline:
            return state
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_pause_stops_a_training_process_and_its_piece_s_time_leaves_the_pause_out(tmp_path):
    """`study.py pause` stops the process that wrote a piece (and its children), `resume` lets it go on, and the time
    the piece records when it ends (as `study._train_resumable` does) is its wall time less the pause."""
    run = tmp_path / "work" / "depo" / "fixed-1-seed0"
    run.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", f"""
import json, os, subprocess, sys, time
from pathlib import Path
from anira_study.study_parking import PIECE_FILE, piece_seconds
run = Path({str(run)!r})
started = time.time()
(run / PIECE_FILE).write_text(json.dumps({{"started": started, "pid": os.getpid()}}))
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a process it started
(run / "worker").write_text(str(worker.pid))
while not (run / "done").exists():
    time.sleep(0.01)
worker.kill()
piece = json.loads((run / PIECE_FILE).read_text())
(run / "result").write_text(json.dumps([piece_seconds(piece, time.time()), time.time() - started]))
"""])
    try:
        deadline = time.time() + 30
        while not (run / "worker").exists() and time.time() < deadline:
            time.sleep(0.05)
        worker = int((run / "worker").read_text())
        study_script = load_script("study")  # through the command line: `study.py pause`, `study.py resume`
        assert study_script.main(["pause", "--work_dir", str(tmp_path / "work")]) == [run]
        assert process_state(child.pid, "T") == "T" and process_state(worker, "T") == "T"
        assert pause_runs(tmp_path / "work") == []  # already paused
        time.sleep(1.0)
        assert study_script.main(["resume", "--work_dir", str(tmp_path / "work")]) == [run]
        assert process_state(child.pid, "R") != "T" and process_state(worker, "S") != "T"
        assert resume_runs(tmp_path / "work") == []
        (start, stop), = json.loads((run / PIECE_FILE).read_text())["pauses"]
        assert stop - start >= 1.0
        (run / "done").write_text("")
        assert child.wait(timeout=30) == 0
        seconds, wall = json.loads((run / "result").read_text())
        assert seconds == pytest.approx(wall - (stop - start), abs=0.05)
    finally:
        child.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process starts from /proc (Linux)")
def test_pause_leaves_alone_a_process_that_started_after_the_piece_whose_number_it_holds(tmp_path):
    """An interrupted piece's file names a process that has ended; its number may belong to another process since."""
    run = tmp_path / "work" / "depo" / "fixed-1-seed0"
    run.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / PIECE_FILE).write_text(json.dumps({"started": time.time() - 3600, "pid": other.pid}))
        assert pause_runs(tmp_path / "work") == []
        time.sleep(0.2)
        assert process_state(other.pid) != "T"
        assert "pauses" not in json.loads((run / PIECE_FILE).read_text())
    finally:
        other.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_pause_also_stops_a_runners_run_that_is_evaluating_and_resume_lets_it_go_on(tmp_path):
    """A run whose training has ended (no piece under way) and which evaluates still takes a core: `pause` stops every
    run process of a runner that holds a runner lock below the work folder."""
    work = tmp_path / "work"
    runner = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
from pathlib import Path
from anira_study.study_runner import runner_lock
with runner_lock(Path({str(work / "depo" / "runner.lock")!r})):
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a run evaluating
    Path({str(tmp_path / "run")!r}).write_text(str(run.pid))
    time.sleep(60)
"""])
    try:
        deadline = time.time() + 30
        while not (tmp_path / "run").exists() and time.time() < deadline:
            time.sleep(0.05)
        run = int((tmp_path / "run").read_text())
        assert pause_runs(work) == []  # no piece of training to record a pause in
        assert process_state(run, "T") == "T" and process_state(runner.pid) != "T"  # the runner itself waits on
        resume_runs(work)
        assert process_state(run, "S") != "T"
    finally:
        runner.kill()
        if (tmp_path / "run").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((tmp_path / "run").read_text()), signal.SIGKILL)
