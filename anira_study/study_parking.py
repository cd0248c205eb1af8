"""Parked checkpoints: an unfinished study run's newest checkpoint kept in the repository, so that a run survives
the loss of its training folder (a fresh machine, a wiped scratch disk), not only an interruption.

    python examples/study.py park        # after (or while) a grid runs: copy each unfinished run's newest checkpoint

A run trains in `work_dir/<task>/<run>/` (a search's in `work_dir/<search>/search/<run>/`) and `park` copies its
newest complete checkpoint, with the files the run keeps beside its checkpoints (the probe log, the training
commits, the wall times), to the same path under `experiments/study/parked/`. When `study.py run` (or `one`,
`search-one`) starts a run whose training folder holds no checkpoint, it resumes from the parked one; when the run
lands, its parked copy is deleted. Checkpoints are a few megabytes at the study's widths; only the newest is kept.

    python examples/study.py pause       # stop every training under way (SIGSTOP), e.g. to time something alone
    python examples/study.py resume      # let them go on (SIGCONT); the pause is not counted as training time

A run's wall time is the sum of its training pieces (`WALL_TIMES_FILE`). The piece under way is described by its
`PIECE_FILE` (start time, process, pauses): `pause_runs` and `resume_runs` record each pause there, and a piece's
time (`piece_seconds`) leaves its pauses out, whether it ends on its own, is parked, or was interrupted.
"""

import json
import os
import shutil
import signal
import time
from pathlib import Path

PARKED = "parked"  # under the study folder
PIECE_FILE = "training_piece.json"  # the start time of the piece of training under way (`study._train_resumable`)
WALL_TIMES_FILE = "wall_times.json"
COMMITS_FILE = "training_commits.json"  # the provenance of every piece of a run's training
RUN_ARGS_FILE = "study_args.json"  # the recipe a training folder holds (`study._train_resumable` checks it on resume)
SIDE_FILES = ("probe_log.jsonl", COMMITS_FILE, RUN_ARGS_FILE)  # kept beside the checkpoints, copied as they are
LANDED_FILE = "landed.json"  # written into a training folder once its run is recorded: nothing left to park


def parked_folder(output_dir: Path | str, work_dir: Path | str, study_dir: Path | str) -> Path:
    """Where the training folder `output_dir` (under `work_dir`) is parked."""
    return Path(study_dir) / PARKED / Path(output_dir).resolve().relative_to(Path(work_dir).resolve())


def checkpoint_folders(output_dir: Path | str) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-N` folder of a training folder, by step."""
    found = [(int(path.name.split("-", 1)[1]), path) for path in Path(output_dir).glob("checkpoint-*")
             if path.is_dir() and path.name.split("-", 1)[1].isdigit()]
    return sorted(found)


def complete_checkpoints(output_dir: Path | str) -> list[Path]:
    """The `checkpoint-N` folders of a training folder whose save finished (the trainer writes trainer_state.json
    last), by step."""
    found = []
    for _, path in checkpoint_folders(output_dir):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found.append(path)
    return found


def piece_seconds(piece: dict, end: float) -> float:
    """The training time of a piece (`PIECE_FILE`'s contents) from its start to `end`, less the part of each pause
    that falls in between (a pause not yet resumed lasts to `end`)."""
    paused = sum(max(0.0, min(end if stop is None else stop, end) - max(start, piece["started"]))
                 for start, stop in piece.get("pauses", []))
    return end - piece["started"] - paused


def wall_times(output_dir: Path | str) -> list[float]:
    """The wall times of a run's training pieces: those recorded, and a piece that did not record its own (under way,
    or interrupted: its `PIECE_FILE` is still there) up to its newest complete checkpoint, whose steps are all of its
    work that a resumption keeps; pauses left out."""
    output_dir = Path(output_dir)
    times = json.loads((output_dir / WALL_TIMES_FILE).read_text()) if (output_dir / WALL_TIMES_FILE).exists() else []
    saved = complete_checkpoints(output_dir)
    if (output_dir / PIECE_FILE).exists() and saved:
        piece = json.loads((output_dir / PIECE_FILE).read_text())
        saved_at = (saved[-1] / "trainer_state.json").stat().st_mtime
        if saved_at > piece["started"]:
            times.append(piece_seconds(piece, saved_at))
    return times


def pause_runs(work_dir: Path | str) -> list[Path]:
    """Stops (SIGSTOP) the process of every piece of training under way below `work_dir`, with the processes it
    started, and records the pause in its `PIECE_FILE`; returns the training folders paused. A piece already paused,
    or whose process has ended, is left as it is. The runs of a runner working below `work_dir` that are not training
    (evaluating a finished run) are stopped too; they have no training time to correct."""
    parents = _parents()  # the process tree, read once
    for pid in _runners_runs(work_dir, parents):
        _signal(pid, signal.SIGSTOP, parents)
    paused = []
    for piece_file in sorted(Path(work_dir).glob(f"**/{PIECE_FILE}")):
        piece = read_piece(piece_file)
        if (piece is None or "pid" not in piece or _open_pause(piece) or not _started_by(piece["pid"], piece["started"])
                or not _signal(piece["pid"], signal.SIGSTOP, parents)):
            continue
        if not piece_file.exists():  # the piece ended between reading and stopping: nothing to pause
            _signal(piece["pid"], signal.SIGCONT, parents)
            continue
        piece["pauses"] = piece.get("pauses", []) + [[time.time(), None]]
        _write_piece(piece_file, piece)
        paused.append(piece_file.parent)
    return paused


def resume_runs(work_dir: Path | str) -> list[Path]:
    """Ends every pause recorded below `work_dir` (`pause_runs`): the pause gets its end time, the processes go on
    (SIGCONT); returns the training folders resumed."""
    parents, resumed = _parents(), []
    for piece_file in sorted(Path(work_dir).glob(f"**/{PIECE_FILE}")):
        piece = read_piece(piece_file)
        if piece is None or not _open_pause(piece):
            continue
        piece["pauses"][-1][1] = time.time()
        _write_piece(piece_file, piece)
        _signal(piece["pid"], signal.SIGCONT, parents)
        resumed.append(piece_file.parent)
    for pid in _runners_runs(work_dir, parents):
        _signal(pid, signal.SIGCONT, parents)
    return resumed


def _runners_runs(work_dir: Path | str, parents: dict[int, int]) -> list[int]:
    """The run processes (`study.py one`, `search-one`) of every runner holding a runner lock below `work_dir`
    (`parents`: `_parents()`)."""
    from .study_runner import RUNNER_LOCK, runner_holder

    runners = {runner_holder(lock) for lock in Path(work_dir).glob(f"**/{RUNNER_LOCK}")}
    return [child for runner in runners if runner and runner.isdigit()
            for child, parent in parents.items() if parent == int(runner)]


def read_piece(piece_file: Path) -> dict | None:
    """A piece's `PIECE_FILE` contents (start time, process, pauses), or None once the piece has ended."""
    try:
        return json.loads(piece_file.read_text())
    except (OSError, ValueError):  # the piece ended meanwhile
        return None


def _write_piece(piece_file: Path, piece: dict) -> None:
    temporary = piece_file.with_name(f".{piece_file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(piece))
    os.replace(temporary, piece_file)


def _open_pause(piece: dict) -> bool:
    return bool(piece.get("pauses")) and piece["pauses"][-1][1] is None


def _signal(pid: int, signum: int, parents: dict[int, int]) -> bool:
    """Sends `signum` to `pid` and the processes below it in `parents` (`_parents()`: its compile and data workers;
    children first when stopping, last when continuing, so that none runs while its parent is stopped); False when
    `pid` is not running."""
    family = _descendants(pid, parents)
    order = [*family, pid] if signum == signal.SIGSTOP else [pid, *family]
    sent = False
    for target in order:
        try:
            os.kill(target, signum)
            sent = sent or target == pid
        except ProcessLookupError:
            continue
    return sent


def _started_by(pid: int, when: float) -> bool:
    """Whether process `pid` runs and had started by time `when`: the process that wrote a piece's file, not a later one
    given the number of an interrupted piece's process (read from /proc on Linux; elsewhere, whether it runs)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        booted = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False  # Linux, and no such process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return booted + ticks / os.sysconf("SC_CLK_TCK") <= when + 1.0  # btime is whole seconds


def _parents() -> dict[int, int]:
    """{process: its parent} of every process, read from /proc (Linux); empty elsewhere."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return parents


def _descendants(pid: int, parents: dict[int, int]) -> list[int]:
    """The processes below `pid` in `parents` (`_parents()`)."""
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def park_run(output_dir: Path | str, target: Path | str) -> Path | None:
    """Copies the newest complete checkpoint of `output_dir` and its side files to `target` (replacing what was
    parked there); the wall times gain the piece under way up to that checkpoint's save. Returns the checkpoint
    parked, or None when the folder has none."""
    output_dir, target = Path(output_dir), Path(target)
    saved = complete_checkpoints(output_dir)
    if not saved:
        return None
    newest = saved[-1]
    staging = target.with_name(target.name + ".parking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # the checkpoint less its copies of the package's modeling code (resuming reads weights and states, not code)
    shutil.copytree(newest, staging / newest.name, ignore=shutil.ignore_patterns("*.py"))
    for name in SIDE_FILES:
        if (output_dir / name).exists():
            shutil.copy2(output_dir / name, staging / name)
    (staging / WALL_TIMES_FILE).write_text(json.dumps(wall_times(output_dir)))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / newest.name


def park(work_dir: Path | str, study_dir: Path | str) -> list[Path]:
    """Parks every run under `work_dir` that has a checkpoint and has not landed (and clears the parked copy of one
    that has); returns the checkpoints parked."""
    work_dir = Path(work_dir)
    folders = sorted({path.parent for path in work_dir.glob("**/checkpoint-*")})
    parked = []
    for output_dir in folders:
        if (output_dir / LANDED_FILE).exists():
            _remove(parked_folder(output_dir, work_dir, study_dir))
            continue
        checkpoint = park_run(output_dir, parked_folder(output_dir, work_dir, study_dir))
        if checkpoint is not None:
            parked.append(checkpoint)
    return parked


def unpark(parked: Path | str, output_dir: Path | str) -> Path | None:
    """Copies a parked run into its training folder when that folder has no checkpoint of its own; returns the
    checkpoint copied, or None (nothing parked, or the folder's own checkpoints are newer work)."""
    parked, output_dir = Path(parked), Path(output_dir)
    saved = complete_checkpoints(parked)
    if not saved or complete_checkpoints(output_dir):
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(saved[-1], output_dir / saved[-1].name)
    for name in (*SIDE_FILES, WALL_TIMES_FILE):
        if (parked / name).exists():
            shutil.copy2(parked / name, output_dir / name)
    return output_dir / saved[-1].name


def mark_landed(output_dir: Path | str, parked: Path | str, record: str) -> None:
    """After a run is recorded: its training folder says so (`park` skips it) and its parked copy goes."""
    (Path(output_dir) / LANDED_FILE).write_text(json.dumps({"recorded_in": record,
                                                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    _remove(parked)


def _remove(parked: Path | str) -> None:
    """Deletes a parked run and the folders it leaves empty, the parked root included."""
    shutil.rmtree(parked, ignore_errors=True)
    folder = Path(parked).parent
    while PARKED in folder.parts and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        if folder.name == PARKED:
            break
        folder = folder.parent
