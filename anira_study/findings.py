"""The main job's findings: the paper's findings 1, 2, 4 and 5 stated with a run's numbers, and the printout.

Each statement says what the numbers show (with intervals and counts), and what in the schedule forced
a pattern when something did (a curriculum, a penalty gate, controllers started at max_depth): a phase
that the schedule imposes is not a finding.
"""

import json
import math
from pathlib import Path

from .statistics import format_correlation


def shipped_findings(shipped: dict) -> list[str]:
    lines = []
    for name, entry in shipped.items():
        if "report" not in entry:
            lines.append(f"{name}: not evaluated ({entry['skipped']}).")
            continue
        report = entry["report"]
        seen = report["test_seen"]
        unseen = report.get("test_extrapolation", {}).get("overall", {})
        lines.append(f"{name} ({entry['steps']} steps, {entry['train_minutes']:.0f} min): seen accuracy "
                     f"{_seen(report, 'generated_accuracy'):.2f} at depth {_seen(report, 'mean_depth'):.2f}, "
                     f"rho(depth, c) seen {format_correlation(seen['spearman'], seen['spearman_interval'])} over {seen['items']} prompts; unseen accuracy "
                     f"{unseen.get('generated_accuracy', math.nan):.2f} at depth {unseen.get('mean_depth', math.nan):.2f}.")
    return lines


def _seen(report: dict, key: str) -> float:
    return report["test_seen"]["overall"].get(key, math.nan)


def findings(args, runs: dict) -> list[str]:
    """The paper's findings 1, 2, 4 and 5 stated with this run's numbers (what they show, not what we hoped)."""
    lines = []
    for name, run in runs.items():
        report = run["report"]
        rho = format_correlation(report["test_seen"]["spearman"], report["test_seen"]["spearman_interval"])
        lines.append(f"F1 {name}: rho(depth, complexity) on seen sizes {rho} over "
                     f"{report['test_seen']['items']} distinct prompts; seen-size accuracy {_seen(report, 'generated_accuracy'):.2f}.")
    for name, run in runs.items():
        report = run["report"]
        if "test_extrapolation" in report:
            unseen = report["test_extrapolation"]["overall"]
            lines.append(f"F2 {name}: unseen sizes accuracy {unseen.get('generated_accuracy', math.nan):.2f} "
                         f"(seen {_seen(report, 'generated_accuracy'):.2f}), mean answer depth {unseen['mean_depth']:.2f} "
                         f"(seen {_seen(report, 'mean_depth'):.2f}); answers needing a symbol never trained: "
                         f"{unseen.get('untrained_answer_share', math.nan):.0%}; prompts holding a symbol no training row "
                         f"holds: {unseen.get('untrained_prompt_share', math.nan):.0%}"
                         + (f" ({', '.join(unseen['untrained_prompt_symbols'])})" if unseen.get("untrained_prompt_symbols") else "")
                         + ".")
    for name, run in runs.items():
        phases = run["phases"]
        if phases:
            forced = []
            if args.curriculum_accuracy is not None:
                unlocked = ", ".join(f"{size} at step {step}" for step, size in run["curriculum"]) or "none beyond the first"
                forced.append(f"a curriculum unlocked sizes in order ({unlocked})")
            if args.penalty_gate_accuracy is not None or args.penalty_warmup_steps:
                forced.append(f"the penalty was held at 0 until step {run['penalty_ramp_start']}" if run["penalty_ramp_start"] is not None
                              else "the penalty gate never opened (the penalty stayed 0)")
            if run["depth_init_bias"] > 0:
                forced.append(f"the controller started at max_depth (depth_init_bias {run['depth_init_bias']})")
            lines.append(f"F4 {name}: validation accuracy reached 90 % of its final value at step {phases['learned_step']} with "
                         f"answer depth {phases['depth_when_learned']:.2f}, then {phases['final_depth']:.2f} at the end "
                         f"(max {phases['max_depth_seen']:.2f}). " + ("Forced by the schedule: " + "; ".join(forced) + "."
                                                                     if forced else "Nothing in the schedule forced the phases."))
    if len(runs) == 2:
        (e_name, e), (o_name, o) = runs.items()
        lines.append(f"F5: seen-size accuracy {e_name} {_seen(e['report'], 'generated_accuracy'):.2f} at mean answer depth "
                     f"{_seen(e['report'], 'mean_depth'):.2f}, {o_name} {_seen(o['report'], 'generated_accuracy'):.2f} at "
                     f"{_seen(o['report'], 'mean_depth'):.2f}.")
    lines += data_caveats(args.task, args.task_params)
    for name, run in runs.items():
        if run["time_guard_fired_at_step"] is not None:
            lines.append(f"NOTE {name}: the wall-time guard stopped training at step {run['time_guard_fired_at_step']} of "
                         f"{run['max_steps']}: this table is not the deterministic one of the seed.")
    return lines


def data_caveats(task: str, task_params: str) -> list[str]:
    """What the task's prompts give away, as NOTE lines: a DEPO whose prompts show solved queries sharing k."""
    from anira_tasks import depo

    if task != "depo" or not depo.solved_queries_shown(**json.loads(task_params)):
        return []
    return ["NOTE: each prompt's earlier queries share k and are shown solved: they leave two or three candidate answers "
            "and name it where 2k is a multiple of the node count (k = 4 on 8 nodes), so accuracy at the larger k "
            "measures hops and that elimination together (experiments/depo_leak)."]


def print_summary(args, summary: dict) -> None:
    """The study's answer first (or that it is pending), then this job's short run, then the shipped models on its prompts."""
    study = summary["study"]
    print(f"\n{'=' * 20} The replicated study {'=' * 20}\n")
    print(study["text"])
    print(f"\n{'=' * 20} This job's short run ({', '.join(summary['models'])}) {'=' * 20}")
    print(f"\nTask {args.task} {args.task_params}, trained on complexity {args.train_sizes}, unseen {args.extrapolation_sizes}.")
    print("n: distinct test prompts; accuracy: greedy generated answer, scored by the task; depth: mean iterations at the")
    print("positions that predict answer tokens; [95 % intervals]; rho over distinct prompts, bootstrap interval.\n")
    print(summary["table"])
    print()
    for name, model in summary["models"].items():
        print(f"{name}: {model['parameters']:,} parameters, {model['steps']} steps in {model['train_seconds']:.0f} s")
    print()
    for line in summary["findings"]:
        print(line)
    if summary["shipped_table"]:
        print("\nThe trained models shipped in hub_configs/, on the same test prompts (trained longer: see their cards):\n")
        print(summary["shipped_table"])
    if summary["shipped_findings"]:
        print()
    for line in summary["shipped_findings"]:
        print(line)
    output_dir = Path(args.output_dir)
    print(f"\nwrote {output_dir / 'report.json'}, {output_dir / 'complexity.png'}, {output_dir / 'training_dynamics.png'}")
    print(f"total wall time {summary['total_seconds']:.0f} s")
