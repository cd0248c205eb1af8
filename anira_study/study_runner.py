"""The study's runner: a queue of `examples/study.py` processes (`one` per grid run, `search-one` per search run),
several at a time, one torch thread each, each logged to its own file; a job may wait for another's result (`ready`)
or be dropped once it is not needed (`cancel`), and a runner lock keeps a second runner off the same work folder.
`study.run_grids` and `study_search.run_search` build the queues.
"""

import contextlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "study.py"


def default_processes() -> int:
    """Runs at a time unless told: one per core on CPU, four sharing a GPU."""
    import torch

    return 4 if torch.cuda.is_available() else (os.cpu_count() or 1)


class Job(NamedTuple):
    """One `examples/study.py` process of a queue: its label and name (printed, and the log's name), arguments, log
    folder, `ready`: None, or a predicate that holds once it may start (a searched grid's run: its search chose), and
    `cancel`: None, or a function that gives a reason once the job is not to run (a search run after the choice is
    decided; a searched grid's run whose search chose below the bar): it is then not started, or stopped if it runs."""
    label: str
    name: str
    arguments: list[str]
    logs: Path
    ready: Callable[[], bool] | None = None
    cancel: Callable[[], str | None] | None = None


def run_processes(label: str, jobs: list[Job], locks: list[Path], work_dir, study_dir, processes: int | None,
                   quick: bool) -> list[tuple[str, int | None]]:
    """`examples/study.py <arguments> --work_dir --study_dir [--quick]` for each job, `processes` at a time (default:
    the cores on CPU, four sharing a GPU), one torch thread each, logged to `<log folder>/<name>.log`; [(name, exit
    code)] in job order. A free process takes the first queued job that is ready; when none is and none runs, the
    jobs left never start (exit code None). A job whose `cancel` gives a reason is not started (exit code None) and,
    when a job ends, a running one whose `cancel` now gives one is stopped (SIGTERM); the reason is printed. A failed job is reported and the others go on.
    Holds every runner lock of `locks` while it runs."""
    processes = processes or default_processes()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    codes: list[int | None] = [None] * len(jobs)
    state = ["queued"] * len(jobs)  # queued, running, done, never, cancelled
    running: dict[int, subprocess.Popen] = {}
    reasons: dict[int, str] = {}
    changed = threading.Condition()

    def launch(i: int) -> int | None:
        job = jobs[i]
        command = [sys.executable, str(SCRIPT), *job.arguments, "--work_dir", str(work_dir),
                   "--study_dir", str(study_dir)] + (["--quick"] if quick else [])
        job.logs.mkdir(parents=True, exist_ok=True)
        with open(job.logs / f"{job.name}.log", "a") as log:
            with changed:
                if state[i] == "cancelled":  # cancelled between take() and here
                    return None
                running[i] = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            code = running[i].wait()
        with changed:
            del running[i]
            stopped = state[i] == "cancelled"
        print(f"{job.label} {job.name}: " + (f"stopped: {reasons[i]}" if stopped else
                                             "done" if code == 0 else f"FAILED (exit {code}, log {log.name})"), flush=True)
        return code

    def cancel_unneeded() -> None:  # under `changed`
        for i, s in enumerate(state):
            if s in ("queued", "running") and jobs[i].cancel is not None and (reason := jobs[i].cancel()):
                state[i], reasons[i] = "cancelled", reason
                if i in running:
                    running[i].terminate()
                else:
                    print(f"{jobs[i].label} {jobs[i].name}: not started: {reason}", flush=True)

    def take() -> int | None:
        with changed:
            while True:
                cancel_unneeded()
                queued = [i for i, s in enumerate(state) if s == "queued"]
                ready = next((i for i in queued if jobs[i].ready is None or jobs[i].ready()), None)
                if ready is not None:
                    state[ready] = "running"
                    return ready
                if not queued:
                    return None
                if "running" not in state and not running:  # nothing left can make them ready
                    for i in queued:
                        state[i] = "never"
                        print(f"{jobs[i].label} {jobs[i].name}: not started (what it waits for did not happen)", flush=True)
                    changed.notify_all()
                    return None
                changed.wait()

    def work() -> None:
        while (i := take()) is not None:
            try:
                codes[i] = launch(i)
            finally:
                with changed:
                    if state[i] == "running":
                        state[i] = "done"
                    cancel_unneeded()
                    changed.notify_all()

    with contextlib.ExitStack() as stack:
        for path in locks:
            stack.enter_context(runner_lock(path))
        print(f"{label}: {processes} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=processes) as pool:
            for future in [pool.submit(work) for _ in range(processes)]:
                future.result()
    return [(job.name, code) for job, code in zip(jobs, codes)]


RUNNER_LOCK = "runner.lock"


@contextlib.contextmanager
def runner_lock(path: Path):
    """Refuses a second runner of the same grid or search in the same work folder while one runs (they would train
    the same runs into the same checkpoint folders): an exclusive, non-blocking lock on `path`, which holds the
    holder's process id. Released when the runner ends, also when it is killed. Without fcntl (Windows): no check."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RuntimeError(f"another runner (process {holder}) is training the runs of {path.parent}: wait for it, or "
                               "stop it and run again (runs resume from their checkpoints)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def runner_holder(lock: Path) -> str | None:
    """The process id written in a grid's runner lock while a runner holds it, else None (no fcntl: None)."""
    try:
        import fcntl
    except ImportError:
        return None
    if not lock.exists():
        return None
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
