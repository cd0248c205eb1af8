"""Where a grid stands (`python examples/study.py status --task depo brevo`): each run finished, training, stopped
or not started, its step of the recipe's budget, and the core-hours the grid still needs.

A run's pace is read from its own checkpoints (`run_pace`: those its piece of training under way saved, less its
pauses, else the newest stretch of saves one process wrote, never an interval across an interruption); a run with
no pace of its own is estimated from the same model's runs under way, else its finished runs (steps over training
seconds), else any finished run of the grid.
"Training" needs both a runner holding the grid's lock and the run's log written in the last `ACTIVE_SECONDS`; a run
that has checkpoints but is not training is "stopped" (`study.py run` resumes it), one whose only checkpoint is
parked in the repository "parked" (`run` resumes it from there). Nothing here reads a result: the
table holds steps and times only, so it can be read while a grid runs without seeing its numbers.
"""

import statistics
import time
from pathlib import Path

from .reproduce import _get
from .study import (GRIDS, SEARCHES, SEEDS, STUDY_DIR, WITHDRAWN, _overridden, grid_models, grid_recipe,
                    protocol_version, read_runs, run_name, waits_for_decision)
from .study_runner import RUNNER_LOCK, default_processes, runner_holder
from .study_parking import PARKED, PIECE_FILE, checkpoint_folders, parked_folder, piece_seconds, read_piece

ACTIVE_SECONDS = 900  # a running run writes its log at least every probe (minutes apart)


def checkpoints(output_dir: Path) -> list[tuple[int, float]]:
    """(step, modification time) of every `checkpoint-N` folder of a training folder, by step."""
    return [(step, path.stat().st_mtime) for step, path in checkpoint_folders(output_dir)]


def seconds_per_step(saved: list[tuple[int, float]], slack: float = 3.0) -> float | None:
    """Seconds per step over the newest stretch of checkpoints that one process wrote, or None with fewer than two:
    an interval more than `slack` times slower than the fastest is one over which the run waited (stopped, paused,
    resumed later), not its pace; walking back from the newest save, such intervals are passed over until the stretch
    has begun, and the first one after that ends it. A single interval is its own pace."""
    intervals = [((t1 - t0), (s1 - s0)) for (s0, t0), (s1, t1) in zip(saved, saved[1:]) if s1 > s0 and t1 >= t0]
    if not intervals:
        return None
    fastest = min(t / n for t, n in intervals)
    stretch = []
    for seconds, steps in reversed(intervals):
        waited = seconds / steps > slack * fastest
        if waited and stretch:
            break
        if not waited:
            stretch.append((seconds, steps))
    return sum(t for t, _ in stretch) / sum(n for _, n in stretch)


def run_pace(saved: list[tuple[int, float]], piece: dict | None) -> float | None:
    """Seconds per step of a run from its checkpoints `saved` (step, time) and its piece of training under way
    (`PIECE_FILE`'s contents, None when none is): between the piece's first and newest saves once it has two, over
    its time less its pauses; else the newest stretch of the saves before it (`seconds_per_step`); else, with one save
    in the piece, from the piece's start (at the checkpoint it resumed from, or step 0) to that save, its startup
    (data, compilation) included. A resumed run's pace is never read across its interruption and wait."""
    if piece is None:
        return seconds_per_step(saved)
    started = piece["started"]
    inside = [(step, when) for step, when in saved if when > started]
    before = [(step, when) for step, when in saved if when <= started]
    if len(inside) >= 2:
        (first, first_at), (last, last_at) = inside[0], inside[-1]
        return (piece_seconds(piece, last_at) - piece_seconds(piece, first_at)) / (last - first)
    if (older := seconds_per_step(before)) is not None or not inside:
        return older
    (step, when), resumed_from = inside[0], before[-1][0] if before else 0
    return piece_seconds(piece, when) / (step - resumed_from) if step > resumed_from else None


def _budget(schedule: list[str], overrides: dict[str, str], quick: bool) -> int | None:
    """The `--max_steps` a run of this schedule trains for (its overrides and, quick, the quick runs' applied as
    `training_args` applies them)."""
    steps = _get(_overridden(schedule, overrides, quick), "--max_steps")
    return int(steps) if steps is not None else None


def max_steps(task: str, study_dir: Path, quick: bool) -> int | None:
    """The grid's step budget (its search's choice for a searched grid), or None while its search has not chosen."""
    try:
        _, schedule, overrides = grid_recipe(task, study_dir, quick)
    except ValueError:
        return None
    return _budget(schedule, overrides, quick)


def _runs_status(planned: list[dict], base: Path, holder: str | None, now: float, parked: Path) -> list[dict]:
    """Each planned run {"run", "group", "budget", "finished": its record (steps, train_seconds) or None} with its
    state, step, pace and core-hours left; its training folder is `base/<run>`, its log `base/logs/<run>.log`, its
    parked checkpoint (`study_parking`) under `parked/<run>`: a run with no checkpoint of its own but a parked one is
    "parked" at the parked step. A run without a pace of its own takes its group's runs under way (today's code), else
    its group's finished runs, else every finished run's."""
    runs = []
    for plan in planned:
        row = {"run": plan["run"], "group": plan["group"], "budget": plan["budget"], "step": 0, "seconds_per_step": None,
               "pace_from": None, "core_hours_left": None}
        entry = plan["finished"]
        if entry is not None:
            timed = entry.get("steps") and entry.get("train_seconds")
            row.update(state="finished", step=entry.get("steps"), core_hours_left=0.0, pace_from="its training",
                       seconds_per_step=entry["train_seconds"] / entry["steps"] if timed else None)
        else:
            saved = checkpoints(base / plan["run"])
            log = base / "logs" / f"{plan['run']}.log"
            active = holder is not None and log.exists() and now - log.stat().st_mtime < ACTIVE_SECONDS
            kept = checkpoints(parked / plan["run"]) if not saved else []
            row.update(state="training" if active else ("stopped" if saved else "parked" if kept else "not started"),
                       step=saved[-1][0] if saved else kept[-1][0] if kept else 0)
            piece = read_piece(base / plan["run"] / PIECE_FILE) if active else None
            row["seconds_per_step"] = run_pace(saved, piece)
            if row["seconds_per_step"] is not None:
                row["pace_from"] = "its checkpoints"
        runs.append(row)
    finished = [r for r in runs if r["state"] == "finished" and r["seconds_per_step"] is not None]
    for row in runs:
        if row["state"] == "finished":
            continue
        if row["seconds_per_step"] is None:
            for source, paces in (
                    ("its group's runs under way", [r["seconds_per_step"] for r in runs
                                                    if r["group"] == row["group"] and r["pace_from"] == "its checkpoints"]),
                    ("its group's finished runs", [r["seconds_per_step"] for r in finished if r["group"] == row["group"]]),
                    ("every finished run", [r["seconds_per_step"] for r in finished])):
                if paces:
                    row.update(seconds_per_step=statistics.median(paces), pace_from=source)
                    break
        if row["seconds_per_step"] is not None and row["budget"] is not None:
            row["core_hours_left"] = max(row["budget"] - row["step"], 0) * row["seconds_per_step"] / 3600
    return runs


def _totals(runs: list[dict]) -> dict:
    left = [r["core_hours_left"] for r in runs if r["state"] != "finished"]
    return {"finished": sum(r["state"] == "finished" for r in runs),
            "core_hours_left": sum(left) if all(x is not None for x in left) else None}


def grid_status(task: str, work_dir: Path | str = "outputs/study", study_dir: Path = STUDY_DIR, quick: bool = False,
                now: float | None = None) -> dict:
    """Every run of the grid (each of `grid_models` at each seed of `SEEDS`, the model its group): {"run", "group",
    "budget", "state", "step", "seconds_per_step", "pace_from", "core_hours_left"}, with the budget, the runner's
    process and the totals; for a searched grid whose search has not chosen, the search's status under "search"."""
    work_dir, now = Path(work_dir), time.time() if now is None else now
    version = protocol_version(task)
    budget = max_steps(task, study_dir, quick)
    done = {(r["model"], r["seed"]): r for r in read_runs(task, study_dir)
            if r["protocol_version"] == version and r.get("quick", False) == quick
            and (study_dir / task / r["folder"] / "report.json").exists()}
    planned = [{"run": run_name(model, seed), "group": model, "budget": budget, "finished": done.get((model, seed))}
               for seed in SEEDS for model in grid_models(task)]
    holder = runner_holder(work_dir / task / RUNNER_LOCK)
    runs = _runs_status(planned, work_dir / task, holder, now, Path(study_dir) / PARKED / task)
    status = {"name": task, "kind": "grid", "protocol_version": version, "max_steps": budget, "runner": holder,
              "runs": runs, **_totals(runs), "withdrawn": WITHDRAWN.get(task)}
    search = GRIDS[task].get("search")
    if search is not None and budget is None:
        status["search"] = search_status(search, work_dir, study_dir, quick, now)
    elif search is not None and status["finished"] < len(runs):
        status["waits"] = waits_for_decision(task, study_dir, quick)  # None, or why its runs do not start
    return status


def search_status(search: str, work_dir: Path | str = "outputs/study", study_dir: Path = STUDY_DIR, quick: bool = False,
                  now: float | None = None) -> dict:
    """Every declared run of a recipe search (candidate x variant, all `SEARCH_MODEL`, one group), as `grid_status`'s."""
    from .study_search import SEARCH_MODEL, candidate_recipe, search_run_name, search_state, search_work_dir

    work_dir, now = Path(work_dir), time.time() if now is None else now
    state = search_state(search, study_dir, quick)
    recorded = {(r["candidate"], r["variant"]): r for r in state["results"]}
    spec = SEARCHES[search]
    planned = [{"run": search_run_name(candidate, variant), "group": SEARCH_MODEL,
                "budget": _budget(*candidate_recipe(search, candidate, variant)[1:], quick),
                "finished": recorded.get((candidate, variant))}
               for candidate in spec["candidates"] for variant in spec["variants"]]
    base = search_work_dir(search, work_dir)
    holder = runner_holder(base / RUNNER_LOCK)
    runs = _runs_status(planned, base, holder, now, parked_folder(base, work_dir, study_dir))
    return {"name": f"{search} search", "kind": "search", "protocol_version": protocol_version(search), "runner": holder,
            "runs": runs, "choice": state["choice"]["candidate"] if state["choice"] else None, **_totals(runs),
            "withdrawn": WITHDRAWN.get(search)}


def format_status(status: dict, processes: int | None = None) -> str:
    """A grid's (or search's) status as a heading line and a markdown table, a searched grid's search first while it
    has not chosen; the hours on `processes` (default: as `run`'s) assume the runs left share them evenly."""
    processes = processes or default_processes()
    counts = {state: sum(r["state"] == state for r in status["runs"]) for state in ("training", "stopped", "parked", "not started")}
    counts = {state: n for state, n in counts.items() if n or state != "parked"}
    left = status["core_hours_left"]
    why_unknown = " (the grid's search has not chosen its recipe)" if "search" in status else ""
    head = (f"{status['name']} (protocol {status['protocol_version']}): {status['finished']} of {len(status['runs'])} runs "
            f"finished, " + ", ".join(f"{n} {state}" for state, n in counts.items()) + "; "
            + (f"{status['withdrawn']}: nothing more trains" if status.get("withdrawn")
               else f"about {left:.1f} core-hours left ({left / processes:.1f} h on {processes} processes)" if left is not None
               else f"core-hours left unknown{why_unknown}")
            + (f"; runner: process {status['runner']}" if status["runner"] else "; no runner"))
    lines = [head, "", "| run | state | step | of | steps per core-hour | core-hours left |", "|---|---|---|---|---|---|"]
    for r in status["runs"]:
        pace = f"{3600 / r['seconds_per_step']:,.0f}" if r["seconds_per_step"] else "-"
        if r["pace_from"] not in (None, "its checkpoints", "its training"):
            pace += " (est.)"
        left = "-" if r["core_hours_left"] is None or r["state"] == "finished" else f"{r['core_hours_left']:.2f}"
        lines.append(f"| {r['run']} | {r['state']} | {r['step']} | {r['budget'] or '?'} | {pace} | {left} |")
    if status.get("waits"):
        lines[1:1] = ["", f"Its runs do not start: {status['waits']}."]
    text = "\n".join(lines)
    return format_status(status["search"], processes) + "\n\n" + text if "search" in status else text
