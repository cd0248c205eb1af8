"""The study's recipe searches: the data and schedule of a searched grid, chosen on the validation split before the
grid runs (experiments/study/PROTOCOL.md, version 2).

    python examples/study.py search --task mano        # every declared candidate in every variant, resumable

A search is declared in `study.SEARCHES`, beside the grids that take their recipe from it. Each candidate recipe is
trained once per variant as `SEARCH_MODEL` with `SEARCH_SEED` (not a study seed), scored on the validation split only
(the exact match of the generated answer per seen size) and recorded in `<study_dir>/<search>/search/search.json`;
once every declared run has a line, `select_recipe` picks the recipe that `study.grid_recipe` gives the grid.
"""

import json
import time
from pathlib import Path

from .study import (COMMON_ARGS, SEARCH_ACCURACY, SEARCH_FILE, SEARCH_MODEL, SEARCH_SEED, SEARCHES, STUDY_DIR,
                    _overridden, check_not_withdrawn, execution_args, locked, protocol_version, train_and_load,
                    write_atomically, write_model_folder)
from .study_runner import RUNNER_LOCK, Job, run_processes
from .study_report import _fmt


def candidate_recipe(search: str, candidate: str, variant: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(data, schedule, overrides of COMMON_ARGS): the `examples/train.py` arguments of one candidate in one variant,
    which the search trains it with and a searched grid trains the chosen one with (its variant's)."""
    if search not in SEARCHES:
        raise ValueError(f"the study's recipe searches are {sorted(SEARCHES)}, not {search!r}")
    spec = SEARCHES[search]
    if candidate not in spec["candidates"]:
        raise ValueError(f"the {search} search's candidates are {list(spec['candidates'])}, not {candidate!r}")
    if variant not in spec["variants"]:
        raise ValueError(f"the {search} search's variants are {list(spec['variants'])}, not {variant!r}")
    c = spec["candidates"][candidate]
    params = {**c.get("task_params", {}), **spec["variants"][variant]}
    data = ["--task", spec["task"], "--task_params", json.dumps(params), "--train_sizes", *map(str, c["train_sizes"]),
            "--extrapolation_sizes", *map(str, c["extrapolation_sizes"]), "--num_train", str(c["num_train"]),
            "--num_test_per_size", str(spec["num_test_per_size"]), "--task_seed", "0"]
    schedule = ["--max_steps", str(candidate_steps(search, candidate))]
    if c.get("curriculum_accuracy") is not None:
        schedule += ["--curriculum_accuracy", str(c["curriculum_accuracy"]), "--curriculum_metric", c["curriculum_metric"]]
    return data, schedule, dict(c.get("overrides", {}))


def candidate_steps(search: str, candidate: str) -> int:
    """A candidate's step budget (the search's, unless the candidate names its own), which the grid then trains for."""
    return SEARCHES[search]["candidates"][candidate].get("steps", SEARCHES[search]["steps"])


def search_args(search: str, candidate: str, variant: str, model_folder: Path, output_dir: Path, quick: bool = False) -> list[str]:
    """The `examples/train.py` arguments of one search run: the candidate's recipe, `SEARCH_MODEL`, `SEARCH_SEED`."""
    data, schedule, overrides = candidate_recipe(search, candidate, variant)
    argv = ["--model_name_or_path", str(model_folder), "--output_dir", str(output_dir), "--seed", str(SEARCH_SEED),
            *data, *schedule, *COMMON_ARGS, *execution_args(search, SEARCH_MODEL, SEARCH_SEED)]
    return _overridden(argv, overrides, quick)


def search_path(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> Path:
    return Path(study_dir) / search / "search" / ("search-quick.json" if quick else SEARCH_FILE)


def search_work_dir(search: str, work_dir: str | Path) -> Path:
    """Where a search's runs train (`<candidate>-<variant>/`, `search_run_name`), log (`logs/`) and lock (`runner.lock`)."""
    return Path(work_dir) / search / "search"


def search_run_name(candidate: str, variant: str) -> str:
    return f"{candidate}-{variant}"


def search_jobs(search: str, pending: list[tuple[str, str]], work_dir: str | Path, study_dir: Path = STUDY_DIR,
                quick: bool = False) -> tuple[list[Job], Path]:
    """The `examples/study.py search-one` process of each pending (candidate, variant), and the search's runner lock.
    Each job is cancelled (not started, or stopped) once the search's choice is decided without it (`search_state`'s
    "not_needed")."""
    base = search_work_dir(search, work_dir)

    def not_needed(key):
        why = "no longer needed (an earlier candidate passed, so the rule cannot choose it)"
        return lambda: why if key in search_state(search, study_dir, quick)["not_needed"] else None

    jobs = [Job(f"{search} search", search_run_name(candidate, variant),
                ["search-one", "--task", search, "--candidate", candidate, "--variant", variant], base / "logs",
                cancel=not_needed((candidate, variant)))
            for candidate, variant in pending]
    return jobs, base / RUNNER_LOCK


SELECTION_RULE = (f"the first candidate in the declared order whose validation exact match is >= {SEARCH_ACCURACY} at every "
                  "seen size of every variant; if none is, the candidate with the highest minimum over its variants and "
                  "seen sizes; a tie goes to the earlier candidate; a size without validation prompts counts as 0; "
                  "once a candidate passes and every earlier one has failed, the later ones are not trained "
                  "(protocol amendment of 2026-12-07)")


def select_recipe(validation: dict[str, dict[str, dict[int, float]]], accuracy: float = SEARCH_ACCURACY) -> dict:
    """The search's selection rule (`SELECTION_RULE`), on {candidate: {variant: {seen size: validation exact match}}}
    in the declared order: the first candidate whose exact match is >= `accuracy` at every seen size of every
    variant; if none is, the candidate with the highest minimum over its variants and seen sizes; a tie goes to the
    earlier candidate. A missing or undefined value (no validation prompt at a size) counts as 0. Returns
    {"candidate", "minimum", "passed", "why"}."""
    if not validation:
        raise ValueError("select_recipe needs at least one candidate's validation numbers")
    minima = {}
    for name, variants in validation.items():
        values = [v for sizes in variants.values() for v in sizes.values()]
        minima[name] = min((v if v is not None and v == v else 0.0) for v in values) if values else 0.0
    for name, low in minima.items():
        if low >= accuracy:
            return {"candidate": name, "minimum": low, "passed": True,
                    "why": f"the first candidate in the declared order whose validation exact match is >= {accuracy} at "
                           "every seen size (every variant)"}
    best = max(minima, key=minima.get)  # max keeps the first of equal values: ties go to the earlier candidate
    return {"candidate": best, "minimum": minima[best], "passed": False,
            "why": f"no candidate reached {accuracy} at every seen size; the highest minimum over seen sizes and variants"}


def decided_early(validation: dict[str, dict[str, dict[int, float]]], candidates: list[str], variants: list[str],
                  accuracy: float = SEARCH_ACCURACY) -> dict | None:
    """`select_recipe`'s choice before every candidate has its numbers, where they already decide it: walking the
    declared `candidates` in order, the first that has every variant's numbers and passes, every earlier one having
    all of its numbers and failed. None while an earlier candidate's numbers are missing, or none has passed: the
    candidates after a passing one cannot change the rule's choice, so they need not be trained."""
    for i, name in enumerate(candidates):
        if set(validation.get(name, {})) != set(variants):
            return None
        choice = select_recipe({c: validation[c] for c in candidates[:i + 1]}, accuracy)
        if choice["passed"]:
            return {**choice, "why": choice["why"] + "; the candidates after it were not needed"}
    return None


def _declared_runs(search: str) -> list[tuple[str, str]]:
    spec = SEARCHES[search]
    return [(candidate, variant) for candidate in spec["candidates"] for variant in spec["variants"]]


def _recipe_record(search: str, candidate: str, variant: str) -> dict:
    data, schedule, overrides = candidate_recipe(search, candidate, variant)
    return {"data": data, "schedule": schedule, "overrides": overrides, "model": SEARCH_MODEL, "seed": SEARCH_SEED}


def search_state(search: str, study_dir: Path = STUDY_DIR, quick: bool = False, recorded: list[dict] | None = None) -> dict:
    """The search's file read against the code's declaration: {"results": the recorded runs whose recipe is still the
    declared one, "pending": the declared (candidate, variant) runs without one that the choice may still need,
    "not_needed": those it no longer needs (after a candidate that `decided_early` chose), "choice": `select_recipe`
    over the results once nothing is pending (or `decided_early`'s), else None}. A result recorded for a recipe since
    changed in `SEARCHES` is pending again (and not read). `recorded`: the results to read in place of the file's (what `record_search` is writing)."""
    path = search_path(search, study_dir, quick)
    if recorded is None:
        text = path.read_text() if path.exists() else ""
        recorded = json.loads(text)["results"] if text.strip() else []
    current = {(r["candidate"], r["variant"]): r for r in recorded
               if (r["candidate"], r["variant"]) in _declared_runs(search)
               and r["recipe"] == _recipe_record(search, r["candidate"], r["variant"])}
    results = [current[key] for key in _declared_runs(search) if key in current]
    pending = [key for key in _declared_runs(search) if key not in current]
    validation = {}
    for r in results:
        validation.setdefault(r["candidate"], {})[r["variant"]] = {int(c): v["exact"] for c, v in r["validation"].items()}
    candidates, variants = list(SEARCHES[search]["candidates"]), list(SEARCHES[search]["variants"])
    choice = select_recipe(validation) if not pending else decided_early(validation, candidates, variants)
    later = candidates[candidates.index(choice["candidate"]) + 1:] if choice else []
    not_needed = [key for key in pending if key[0] in later]
    return {"path": path, "results": results, "pending": [key for key in pending if key not in not_needed],
            "not_needed": not_needed, "choice": choice}


def record_search(search: str, entry: dict, study_dir: Path = STUDY_DIR, quick: bool = False) -> dict:
    """Adds (or replaces) one search run's line in the search's file and writes the rule's choice once every declared
    run has one (None before). Returns the file's content. The search's runs are separate processes: a file lock
    keeps two that finish together from losing one's line (`locked`)."""
    path = search_path(search, study_dir, quick)
    with locked(path):
        text = path.read_text() if path.exists() else ""
        old = json.loads(text)["results"] if text.strip() else []
        results = [r for r in old if (r["candidate"], r["variant"]) != (entry["candidate"], entry["variant"])] + [entry]
        order = {key: i for i, key in enumerate(_declared_runs(search))}
        results.sort(key=lambda r: order.get((r["candidate"], r["variant"]), len(order)))
        spec = SEARCHES[search]
        content = {"search": search, "task": spec["task"], "protocol_version": protocol_version(search), "quick": quick,
                   "model": SEARCH_MODEL, "seed": SEARCH_SEED, "steps": {c: candidate_steps(search, c) for c in spec["candidates"]},
                   "accuracy": SEARCH_ACCURACY,
                   "score": "exact match of the greedily generated answer per seen size, validation split only",
                   "rule": SELECTION_RULE,
                   "candidates": list(spec["candidates"]), "variants": list(spec["variants"]), "results": results}
        state = search_state(search, study_dir, quick, recorded=results)
        content["choice"] = state["choice"]
        content["pending"] = [f"{c}/{v}" for c, v in state["pending"]]
        content["not_needed"] = [f"{c}/{v}" for c, v in state["not_needed"]]
        write_atomically(path, json.dumps(content, indent=2) + "\n")
        return content


def searched_choice(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> str:
    """The candidate the search chose; a clear error naming `search` while it has not chosen."""
    state = search_state(search, study_dir, quick)
    if state["choice"] is None:
        total = len(_declared_runs(search))
        done = "no result" if not state["path"].exists() else f"{total - len(state['pending'])} of {total} candidate runs done"
        raise ValueError(f"the recipe search {search!r} has not chosen a recipe ({state['path']}: {done}): run "
                         f"`python examples/study.py search --task {search}{' --quick' if quick else ''}` first")
    return state["choice"]["candidate"]


def search_one(search: str, candidate: str, variant: str, work_dir: Path, study_dir: Path = STUDY_DIR, quick: bool = False,
               device: str | None = None) -> dict:
    """One search run, in this process: train the candidate as `SEARCH_MODEL` with `SEARCH_SEED` (or resume, or skip
    when finished), then score it on the validation split (nothing else is read): the exact match of the greedily
    generated answer per seen size. Recorded in the search's file; returns the entry."""
    from anira_tasks.dataset import VALIDATION

    from .evaluation import generated_correct
    from .reproduce import machine, provenance
    from .statistics import wilson_interval
    from .study_parking import WALL_TIMES_FILE, mark_landed, parked_folder

    check_not_withdrawn(search)
    base = search_work_dir(search, work_dir)
    output_dir = base / search_run_name(candidate, variant)
    model_folder = write_model_folder(search, SEARCH_MODEL, base / "configs" / SEARCH_MODEL)
    argv = search_args(search, candidate, variant, model_folder, output_dir, quick)
    parked = parked_folder(output_dir, work_dir, study_dir)
    trained, tokenizer, data, train_sizes, _ = train_and_load(argv, output_dir, parked, device)
    rows = data[VALIDATION].to_list()
    correct = generated_correct(trained, rows, tokenizer)
    validation = {}
    for size in train_sizes:
        hits = [ok for ok, row in zip(correct, rows) if row["complexity"] == size]
        validation[str(size)] = {"exact": sum(hits) / len(hits) if hits else float("nan"), "prompts": len(hits),
                                 "interval": list(wilson_interval(sum(hits), len(hits)))}
    state = json.loads((output_dir / "trainer_state.json").read_text()) if (output_dir / "trainer_state.json").exists() else {}
    times_file = output_dir / WALL_TIMES_FILE
    entry = {"candidate": candidate, "variant": variant, "recipe": _recipe_record(search, candidate, variant),
             "validation": validation, "steps": state.get("global_step"),
             "train_seconds": sum(json.loads(times_file.read_text())) if times_file.exists() else None,
             "machine": machine(), "commit": provenance()["training_commit"],
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train_args": argv}
    record_search(search, entry, study_dir, quick)
    mark_landed(output_dir, parked, str(search_path(search, study_dir, quick)))
    return entry


def run_search(search: str, work_dir: str | Path = "outputs/study", study_dir: Path = STUDY_DIR, processes: int | None = None,
               quick: bool = False) -> dict:
    """Every pending run of the search (candidate x variant), `processes` at a time, each in its own process
    (`examples/study.py search-one`), then the search's state (results, pending, choice). Resumable like `run_grid`:
    recorded runs are skipped, an interrupted training resumes from its checkpoint."""
    if search not in SEARCHES:
        raise ValueError(f"the study's recipe searches are {sorted(SEARCHES)}, not {search!r}")
    check_not_withdrawn(search)
    todo = search_state(search, study_dir, quick)["pending"]
    jobs, lock = search_jobs(search, todo, work_dir, study_dir, quick)
    print(f"{search} search: {len(todo)} runs pending ({SEARCH_MODEL}, seed {SEARCH_SEED}): "
          + ", ".join(f"{job.name} ({candidate_steps(search, candidate)} steps)" for job, (candidate, _) in zip(jobs, todo)),
          flush=True)
    codes = run_processes(f"{search} search", jobs, [lock], work_dir, study_dir, processes, quick)
    state = search_state(search, study_dir, quick)
    state["exit_codes"] = dict(codes)
    return state


def format_search(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> str:
    """Markdown: every recorded run's validation exact match per seen size, then the rule's choice (or what is pending)."""
    state = search_state(search, study_dir, quick)
    lines = [f"# {search}: recipe search ({SEARCH_MODEL}, seed {SEARCH_SEED}, validation split)", "",
             "| candidate | variant | steps | validation exact match per seen size (prompts) | minimum |",
             "|---|---|---|---|---|"]
    for r in state["results"]:
        cells = " / ".join(f"{c}: {_fmt(v['exact'])} ({v['prompts']})" for c, v in r["validation"].items())
        lines.append(f"| {r['candidate']} | {r['variant']} | {r.get('steps') or candidate_steps(search, r['candidate']):,} | {cells} | "
                     f"{_fmt(min(v['exact'] for v in r['validation'].values()))} |")
    choice = state["choice"]
    lines += ["", f"Chosen: {choice['candidate']} (minimum {_fmt(choice['minimum'])}): {choice['why']}." if choice
              else "Pending: " + ", ".join(f"{c}/{v}" for c, v in state["pending"]) + "."]
    if state["not_needed"]:
        lines.append("Not trained to the end (an earlier candidate passed, so the rule cannot choose them): "
                     + ", ".join(f"{c}/{v}" for c, v in state["not_needed"]) + ".")
    return "\n".join(lines)
