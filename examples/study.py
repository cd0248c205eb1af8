"""The replicated study (experiments/study/PROTOCOL.md): a task's grid of models over seeds, from scratch.

    python examples/study.py run --task depo                     # every (model, seed) of the grid; resumes
    python examples/study.py run --task depo brevo               # one queue: BREVO's runs follow DEPO's
    python examples/study.py run --task depo --models anira-o --seeds 0 --processes 1
    python examples/study.py status --task depo brevo            # each run's step and the core-hours left, no results
    python examples/study.py report --task depo                  # tables and figures over seeds from runs.json
    python examples/study.py figures --task depo                 # the figures alone (a grid in progress: what exists)
    python examples/study.py figures --task depo brevo mano-v9 clrs-topological_sort clrs-dfs   # every task's, one command
    python examples/study.py run --task depo --quick             # the whole pipeline in minutes, in outputs/study-quick/
    python examples/study.py search --task mano-v9               # a searched grid's recipe (mano-v9, clrs-<algorithm>)
    python examples/study.py run --task mano-v9                  # then its grid (also mano-v9-no-marker), as for depo
    python examples/study.py run --task depo-v8 mano-v9 clrs-dfs # one queue: ready grids, then every pending search, then their grids
    python examples/study.py ship --task depo-v8                 # seed 0 of anira-e, anira-o, fixed-6 into hub_configs/
    python examples/study.py operating-curve --task depo         # v3: every anira-o run at halting thresholds 0.1-0.9
    python examples/study.py park                                # unfinished runs' newest checkpoints into the repository
    python examples/study.py pause                               # stop the trainings under way (SIGSTOP); `resume`

`run` trains one process per core on CPU (several per GPU), checkpoints as it goes (run it again after an
interruption), evaluates each finished run on the test prompts, and writes its weights and report under
experiments/study/<task>/runs/ with a line in runs.json. `ship` copies the protocol's shipped runs (seed 0 of anira-e,
anira-o and fixed-6) into hub_configs/anira-{e,o,fixed}-<task> and writes their recipes and cards
(hub_configs/build.py); it refuses, naming them, while any of the three has not finished (`anira_study.ship`).
`search` trains a search's declared candidates (`fixed-6`, search seed 100), scores each on the validation split only,
and writes every candidate's numbers and the rule's choice to experiments/study/<search>/search/search.json; `run` on
a searched grid whose search has not chosen queues the search's runs first and starts the grid's once it has chosen
(with several grids, every pending search's runs go after the runs of the grids ready now and before every grid
that waits on a search, so a search's choice never waits for another grid's long runs).
`park` copies each unfinished run's newest checkpoint to experiments/study/parked/, from which `run` resumes a run whose
training folder is gone (a fresh machine), and which a run's landing clears (`anira_study.study_parking`). `pause`
stops every training under way and every run a runner is evaluating, to time something or run the tests alone, and
`resume` lets them go on; a run's wall time leaves the pause out.
`operating-curve` scores every finished anira-o run at halting thresholds 0.1-0.9 against its weights at every uniform
depth, picks a threshold on the validation split by the protocol's rule and reports the gain there on test
(`anira_study.operating_curve`, written to each run folder's operating_curve.json and the grid's operating_curve.md).
The logic lives in `anira_study.study` (the grids and their runs), `anira_study.study_search` (the recipe searches)
and `anira_study.study_report` (the tables and figures over seeds).
"""

import argparse
import sys

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.cli import run_script
from anira_study.ship import ship
from anira_study.study import GRIDS, MODELS, SEARCHES, SEEDS, STUDY_DIR, run_grids, train_and_evaluate
from anira_study.study_parking import park, pause_runs, resume_runs
from anira_study.study_report import study_figures, study_report
from anira_study.study_search import format_search, run_search, search_one
from anira_study.study_status import format_status, grid_status


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "one", "status", "report", "figures", "ship", "search", "search-one", "operating-curve"):
        sub = commands.add_parser(name)
        sub.add_argument("--task", required=True, choices=sorted(SEARCHES if name.startswith("search") else GRIDS),
                         nargs="+" if name in ("run", "status", "figures") else None,
                         help={"run": "one or more grids, their runs queued grid after grid through the same processes",
                               "status": "one or more grids",
                               "figures": "one or more grids (a grid with no finished run is named and skipped)",
                               "search": "the search"}.get(name, "the grid"))
        sub.add_argument("--study_dir", help="where runs.json and the runs' folders go (default experiments/study, "
                                             "with --quick outputs/study-quick)")
        sub.add_argument("--quick", action="store_true", help="tiny runs (minutes) through the whole pipeline")
        if name in ("run", "one", "status", "search", "search-one"):
            sub.add_argument("--work_dir", help="training folders (checkpoints), outside the repository (default "
                                                "outputs/study, with --quick outputs/study-quick/work: a quick run's "
                                                "folder is never a real run's)")
        if name in ("run", "status", "search"):
            sub.add_argument("--processes", type=int, help="runs at a time (default: the cores on CPU, 4 on a GPU)")
        if name == "search-one":
            sub.add_argument("--candidate", required=True)
            sub.add_argument("--variant", required=True)
        if name == "run":
            sub.add_argument("--models", nargs="+", choices=list(MODELS), help="those of each grid's models to run (default: all)")
            sub.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
        if name == "one":
            sub.add_argument("--model", required=True, choices=list(MODELS))
            sub.add_argument("--seed", required=True, type=int)
        if name == "operating-curve":
            sub.add_argument("--force", action="store_true", help="compute again the runs that have a result")
        if name == "ship":
            sub.add_argument("--hub_dir", help="the named folders to write (default hub_configs, with --quick "
                                               "outputs/study-quick/hub_configs)")
            sub.add_argument("--force", action="store_true", help="replace named folders that hold a later protocol "
                                                                  "version's model of another grid")
    park_parser = commands.add_parser("park", help="copy each unfinished run's newest checkpoint into the repository "
                                                   "(experiments/study/parked/), where `run` resumes it from on a machine "
                                                   "without its training folder")
    park_parser.add_argument("--work_dir", default="outputs/study", help="training folders (checkpoints), outside the repository")
    park_parser.add_argument("--study_dir", help="the study folder (default experiments/study)")
    for name, text in (("pause", "stop every training under way (SIGSTOP), recording the pause so that it is not counted as "
                                 "training time"), ("resume", "let the paused trainings go on (SIGCONT)")):
        pause_parser = commands.add_parser(name, help=text)
        pause_parser.add_argument("--work_dir", default="outputs/study", help="training folders (checkpoints)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from pathlib import Path

    if args.command in ("pause", "resume"):
        folders = (pause_runs if args.command == "pause" else resume_runs)(args.work_dir)
        print("\n".join(f"{args.command}d {folder}" for folder in folders) or f"nothing to {args.command} under {args.work_dir}")
        return folders
    study_dir = Path(args.study_dir or ("outputs/study-quick" if getattr(args, "quick", False) else STUDY_DIR))
    if "work_dir" in vars(args) and args.work_dir is None:
        args.work_dir = "outputs/study-quick/work" if args.quick else "outputs/study"
    if args.command == "park":
        parked = park(args.work_dir, study_dir)
        print("\n".join(f"parked {checkpoint}" for checkpoint in parked) or f"nothing to park under {args.work_dir}")
        return parked
    if getattr(args, "processes", None) is not None and args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    if args.command == "search":
        state = run_search(args.task, args.work_dir, study_dir, args.processes, args.quick)
        print(format_search(args.task, study_dir, args.quick))
        failed = [name for name, code in state["exit_codes"].items() if code != 0]
        if failed:
            raise SystemExit(f"failed search runs (their logs are under {args.work_dir}/{args.task}/search/logs): {', '.join(failed)}")
        return state
    if args.command == "search-one":
        _one_thread_on_cpu()
        return search_one(args.task, args.candidate, args.variant, Path(args.work_dir), study_dir, args.quick)
    if args.command == "run":
        if any(seed < 0 for seed in args.seeds):
            raise ValueError(f"--seeds must be >= 0, got {args.seeds}")
        results = run_grids(args.task, args.models, args.seeds, args.work_dir, study_dir, args.processes, args.quick)
        failed = [f"{task}/{model}-seed{seed}" for task, model, seed, code in results if code not in (0, None)]
        unstarted = [f"{task}/{model}-seed{seed}" for task, model, seed, code in results if code is None]
        if failed or unstarted:
            raise SystemExit("; ".join(
                ([f"failed runs (their logs are under {args.work_dir}/<task>/logs): {', '.join(failed)}"] if failed else [])
                + ([f"not started, their search having chosen no recipe (a search run failed: its log is under "
                    f"{args.work_dir}/<search>/search/logs): {', '.join(unstarted)}"] if unstarted else [])))
        return results
    if args.command == "status":
        statuses = [grid_status(task, args.work_dir, study_dir, args.quick) for task in args.task]
        print("\n\n".join(format_status(status, args.processes) for status in statuses))
        return statuses
    if args.command == "one":
        _one_thread_on_cpu()
        return train_and_evaluate(args.task, args.model, args.seed, Path(args.work_dir), study_dir, args.quick)
    if args.command == "ship":
        hub_dir = Path(args.hub_dir or ("outputs/study-quick/hub_configs" if args.quick else "hub_configs"))
        folders = ship(args.task, study_dir, hub_dir, args.quick, args.force)
        print("\n".join(f"wrote {folder}" for folder in folders))
        return folders
    if args.command == "figures":
        if len(args.task) == 1:
            return _figures(args.task[0], study_dir, args.quick)
        drawn = {}
        for task in args.task:
            print(f"{task}:")
            try:
                drawn[task] = _figures(task, study_dir, args.quick)
            except ValueError as error:  # a grid with no finished run yet: say so, draw the others
                print(f"  no figures: {error}")
        return drawn
    if args.command == "operating-curve":
        from anira_study.operating_curve import operating_curve_grid

        _one_thread_on_cpu()
        result = operating_curve_grid(args.task, study_dir, args.quick, args.force)
        print(result["markdown"] + (f"\n\nfigure: {result['figure']}" if result["figure"] else ""))
        return result
    report = study_report(args.task, study_dir, quick=args.quick)
    print(report["markdown"])
    report["figures"] = _figures(args.task, study_dir, args.quick)
    return report


def _one_thread_on_cpu() -> None:
    """A run in its own process trains on one core (one torch thread) beside the grid's other runs; on a GPU as is."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)


def _figures(task: str, study_dir, quick: bool) -> dict:
    figures = study_figures(task, study_dir, quick=quick)
    print(f"\nfigures ({figures['note']}):\n" + "\n".join(f"  {path}" for path in figures["paths"]))
    for run in figures["missing"]:
        print(f"  not drawn: {run['run']} ({run['why']})")
    return figures


if __name__ == "__main__":
    run_script(main, "study.py")
