"""The study over seeds, from runs.json and the runs' reports (nothing is trained or evaluated here).

- `study_summary`, `study_report`: per model, every seed's numbers and their summary over seeds, and the seeds each
  finding holds in (`study_findings`), as markdown (`format_study`) in `<task>/results.md` and `<task>/summary.json`;
- `study_curves`, `study_figures`: what the study's figures draw, each quantity a `band` over seeds, also while the
  grid is in progress (`missing_note` names the runs not drawn);
- `study_answer`: what the main job (`anira_study.experiment`) shows of the study before its own short run.
"""

import json
from pathlib import Path

from .study import (GRIDS, MODELS, PROTOCOL_FILE, RUNS_FILE, SEEDS, SEEN, SHIPPED_SEED, STUDY_DIR, UNSEEN, grid_models,
                    grid_size, grid_state, protocol_version, read_runs, run_name)
from .study_findings import (FINDING_1_ACCURACY, FINDING_1_RHO, FINDING_4_FALL, FINDING_4_HOLDS, FINDING_5_TOLERANCE,
                             GAIN_GOAL, depth_needed, depth_pays, finding_1, finding_2, finding_3, finding_4_phases,
                             finding_5, iteration_loss_phases, mano_marker_finding, mano_marker_pair, penalty_onset,
                             run_folder_numbers, sizes_never_trained)


# ----------------------------------------------------------------------------- the tables over seeds
def study_report(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False) -> dict:
    """`study_summary`, written to `<task>/results.md` and `<task>/summary.json`."""
    version = version or protocol_version(task)
    result = study_summary(task, study_dir, version, quick)
    out = study_dir / task
    (out / ("summary-quick.json" if quick else "summary.json")).write_text(json.dumps(
        {k: v for k, v in result.items() if k != "markdown"}, indent=2) + "\n")
    (out / ("results-quick.md" if quick else "results.md")).write_text(result["markdown"] + "\n")
    return result


def study_summary(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False) -> dict:
    """Per model, every seed's numbers and their summary over seeds; per finding, how many seeds it holds in
    (nothing is written)."""
    version = version or protocol_version(task)
    from .analysis import read_probe_log
    from .statistics import seed_summary
    from .trainer import PROBE_LOG_FILE

    entries = [r for r in read_runs(task, study_dir) if r["protocol_version"] == version and r.get("quick", False) == quick]
    if not entries:
        raise ValueError(f"no runs of protocol {version} in {study_dir / task / RUNS_FILE}: run `examples/study.py run --task {task}` first")
    per_model: dict[str, dict[int, dict]] = {}
    for entry in entries:
        folder = study_dir / task / entry["folder"]
        numbers = run_folder_numbers(folder) | {"steps": entry["steps"]}
        if MODELS[entry["model"]][0] != "fixed":
            log = read_probe_log(folder / PROBE_LOG_FILE) if (folder / PROBE_LOG_FILE).exists() else []
            numbers["penalty_from_step"] = penalty_onset(log)
            numbers["phases"] = finding_4_phases(log)
        per_model.setdefault(entry["model"], {})[entry["seed"]] = numbers

    def over_seeds(model: str, key, target=None) -> dict | None:
        values = [key(n) for n in per_model[model].values()]
        values = [v for v in values if v is not None and v == v]
        return seed_summary(values, target) if values else None

    models = {}
    for model, seeds in sorted(per_model.items()):
        models[model] = {
            "seeds": {str(s): n for s, n in sorted(seeds.items())},
            "pooled_seen_accuracy": over_seeds(model, lambda n: n["pooled_seen_accuracy"]),
            "pooled_seen_depth": over_seeds(model, lambda n: n["pooled_seen_depth"]),
            "min_seen_accuracy": over_seeds(model, lambda n: min(n["seen_accuracy"].values()), FINDING_1_ACCURACY),
            "rho_seen": over_seeds(model, lambda n: n["rho_seen"], FINDING_1_RHO),
            "adaptive_gain": over_seeds(model, lambda n: n.get("adaptive_gain"), GAIN_GOAL),
            "oracle_gain_matched": over_seeds(model, lambda n: n["oracle_gain_matched"]),
        }
        if MODELS[model][0] != "fixed":
            models[model]["finding_1_seeds"] = sum(finding_1(n) for n in seeds.values())
            models[model]["finding_2_seeds"] = sum(finding_2(n) for n in seeds.values())
            models[model]["depth_pays_seeds"] = sum(depth_pays(n) for n in seeds.values())
            models[model]["finding_4_seeds"] = sum((n.get("phases") or {}).get("verdict") == FINDING_4_HOLDS
                                                   for n in seeds.values())
    findings = {}
    needed = depth_needed(per_model)
    if needed is not None:
        findings["depth_needed"] = needed
    if "anira-o" in per_model and "anira-e" in per_model:
        pairs = [s for s in per_model["anira-o"] if s in per_model["anira-e"]]
        findings["finding_5_seeds"] = sum(finding_5(per_model["anira-o"][s], per_model["anira-e"][s]) for s in pairs)
        findings["finding_5_pairs"] = len(pairs)
        three = [finding_3(per_model["anira-o"][s], per_model["anira-e"][s]) for s in pairs]
        if any(value is not None for value in three):
            findings["finding_3_seeds"] = sum(bool(value) for value in three)
    twins = iteration_loss_phases(per_model)
    if twins is not None:
        findings["iteration_loss_phases"] = twins
    pair = mano_marker_pair(task)
    if pair is not None and version == protocol_version(task):  # finding 3 reads both MANO grids
        findings["finding_3_marker"] = mano_marker_finding(pair, study_dir, quick)
    from .operating_curve import grid_counts

    _, missing = grid_state(task, study_dir, version, quick)
    result = {"task": task, "protocol_version": version, "runs": len(entries), "models": models, "findings": findings,
              "planned": grid_size(task), "missing": [m["run"] for m in missing],
              "operating_curve": grid_counts(task, study_dir, quick)}
    result["markdown"] = format_study(result)
    return result


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _onset_cell(n: dict) -> str:
    if "penalty_from_step" not in n:
        return "-"
    return "never" if n["penalty_from_step"] is None else str(n["penalty_from_step"])


def rho_cell(n: dict) -> str:
    """A run's seen-size rho (`run_numbers`) with its bootstrap interval when it is defined."""
    interval = n.get("rho_seen_interval")
    defined = n["rho_seen"] == n["rho_seen"]  # NaN: constant depth
    return _fmt(n["rho_seen"]) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval and defined else "")


def gain_cell(n: dict) -> str:
    """A run's adaptive gain (`run_numbers`) with its bootstrap interval when it has one."""
    gain, interval = n.get("adaptive_gain"), n.get("adaptive_gain_interval")
    if gain is not None and gain != gain:  # no uniform depth of its weights reaches its accuracy
        return "undefined (above every uniform depth)"
    return _fmt(gain) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")


def _span(stat: dict) -> str:
    """A range over seeds, 'low to high' (a dash would run into a negative bound)."""
    return f"{_fmt(stat['min'])} to {_fmt(stat['max'])}"


def _over(stat: dict | None) -> str:
    if not stat:
        return "-"
    if stat["seeds"] < 2:
        return f"{_fmt(stat['mean'])} (1 seed)"
    interval = f"t-interval [{_fmt(stat['low'])}, {_fmt(stat['high'])}]"
    return f"{_fmt(stat['mean'])} (range {_span(stat)}, {interval}, {stat['seeds']} seeds)"


def _trained_cell(n: dict) -> str:
    steps = n.get("trained_from_step")
    cell = lambda v: "never" if v is None else f"by {v['by']}" if isinstance(v, dict) else str(v)  # noqa: E731
    return "-" if steps is None else " / ".join(cell(v) for v in steps.values())


def starved_line(result: dict) -> str | None:
    """A sentence naming the runs whose curriculum never unlocked a seen size, or None when every run trained on every
    seen size: their accuracy at that size is that of a size they never saw."""
    starved = [(model, seed, sizes_never_trained(n["trained_from_step"]))
               for model, m in result["models"].items() for seed, n in m["seeds"].items() if n.get("trained_from_step")]
    curricular = len(starved)
    starved = [(model, seed, sizes) for model, seed, sizes in starved if sizes]
    if not starved:
        return None
    named = ", ".join(f"{model} seed {seed} ({', '.join(map(str, sizes))})" for model, seed, sizes in starved)
    return (f"In {len(starved)} of {curricular} runs the curriculum never unlocked a seen size, so the run never trained on it "
            f"and its accuracy there is that of a size it never saw: {named}.")


def depth_needed_line(needed: dict) -> str:
    """`depth_needed`'s counts and verdict in one sentence (the report and the main job)."""
    verdict = {True: "holds", False: "does not hold", None: "undecided (seeds to come)"}[needed["holds"]]
    values = ", ".join(f"{_fmt(v, 3)} (seed {seed})" for seed, v in needed["fixed_1_largest_accuracy"].items())
    return (f"Depth is needed: `fixed-1`'s accuracy at the largest seen size {values or '-'}, below {FINDING_1_ACCURACY} in "
            f"{needed['fixed_1_below']} of {needed['fixed_1_seeds']} seeds; `fixed-6`'s weights more accurate there at their "
            f"full depth than at one iteration in {needed['fixed_6_rising']} of {needed['fixed_6_seeds']} (each needed in at "
            f"least {len(SEEDS) - 1} of {len(SEEDS)}): {verdict}." + _untrained_note(needed))


def _untrained_note(needed: dict) -> str:
    seeds = needed.get("fixed_1_never_trained_there") or []
    if not seeds:
        return ""
    return (f" (`fixed-1` never trained on that size in seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}: its curriculum never unlocked it, so there its accuracy is not a measure of what "
            "one iteration can learn.)")


def format_study(result: dict) -> str:
    """Markdown: one row per (model, seed), then one row per model over seeds, then the findings' seed counts."""
    missing = result.get("missing")
    counted = f"{result['runs']} of {result['planned']} runs" if missing else f"{result['runs']} runs"
    lines = [f"# {result['task']}: protocol {result['protocol_version']}, {counted}", "",
             *([f"The grid is in progress; still to come: {', '.join(missing)}.", ""] if missing else []),
             "Per run (accuracy of the generated answer on the test prompts; depth at the answer positions; rho over "
             "prompts with its bootstrap interval; gains from the depth-need analysis on the seen sizes):", "",
             "| model | seed | seen accuracy per size | unseen accuracy | seen depth per size | rho (seen) | "
             "adaptive gain | oracle gain (matched) | F1 | F2 | penalty on from step | seen sizes trained from step | "
             "training forward |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in result["models"].items():
        for seed, n in m["seeds"].items():
            rho, gain = rho_cell(n), gain_cell(n)
            adaptive = MODELS[model][0] != "fixed"
            lines.append(
                f"| {model} | {seed} | {' / '.join(_fmt(v) for v in n['seen_accuracy'].values())} | "
                f"{' / '.join(_fmt(v) for v in n['unseen_accuracy'].values())} | "
                f"{' / '.join(_fmt(v) for v in n['seen_depth'].values())} | {rho} | {gain if adaptive else '-'} | "
                f"{_fmt(n['oracle_gain_matched'])} | {('yes' if finding_1(n) else 'no') if adaptive else '-'} | "
                f"{('yes' if finding_2(n) else 'no') if adaptive else '-'} | {_onset_cell(n) if adaptive else '-'} | "
                f"{_trained_cell(n)} | {n.get('training_forward', 'eager')} |")
    lines += ["", "Penalty on from step: the adaptive models' compute penalty is 0 until the validation probe's token "
                  "accuracy, pooled over the seen sizes, reaches 0.9, then ramps (the protocol's gate); the first probe "
                  "step with a penalty above 0, "
                  "or never: such a run trained on the LM and iteration losses alone, and any fall of its depth is "
                  "theirs. Seen sizes trained from step: the step from which the complexity curriculum put each seen "
                  "size in the training batches (the smallest from 0, the others when the validation probe unlocked them; "
                  "never: the run never trained on that size; by t: unlocked at t or before, the log holding only a "
                  "larger size's unlock at t); - without a curriculum. Training forward: compiled (`--compile_model`, "
                  "protocol v5) or eager, equal within float rounding."]
    starved = starved_line(result)
    if starved:
        lines += ["", starved]
    lines += ["", "Over seeds (mean, range, and a t-interval over training runs, not over prompts):", "",
              "| model | pooled seen accuracy | lowest seen-size accuracy | pooled seen depth | rho (seen) | adaptive gain | "
              "F1 holds | F2 holds | depth pays |", "|---|---|---|---|---|---|---|---|---|"]
    for model, m in result["models"].items():
        seeds = len(m["seeds"])
        f1, f2, pays = (f"{m[key]} of {seeds}" if key in m else "-"
                        for key in ("finding_1_seeds", "finding_2_seeds", "depth_pays_seeds"))
        lines.append(f"| {model} | {_over(m['pooled_seen_accuracy'])} | {_over(m['min_seen_accuracy'])} | "
                     f"{_over(m['pooled_seen_depth'])} | {_over(m['rho_seen'])} | {_over(m['adaptive_gain'])} | {f1} | {f2} | "
                     f"{pays} |")
    lines += ["", "Depth pays: the adaptive gain's interval above 1, seeds counted (an undefined gain, where the model is more "
                  "accurate than its weights at every uniform depth, is not counted: the rule asks for a gain)."]
    phases = [(model, seed, n["phases"]) for model, m in result["models"].items() for seed, n in m["seeds"].items()
              if n.get("phases")]
    if phases:
        lines += ["", "Finding 4 (protocol v4: training runs in two phases, accuracy first, then compute falls; the validation "
                      "probe's mean answer depth at its first probe d0, at the learned step dl (pooled token accuracy first "
                      "at 0.9 of its maximum) and at the end dend):", "",
                  "| model | seed | learned step | d0 | dl | dend | penalty on from step | verdict |", "|---|---|---|---|---|---|---|---|"]
        for model, seed, p in phases:
            onset = "never" if p["penalty_from_step"] is None else p["penalty_from_step"]
            lines.append(f"| {model} | {seed} | {p['learned_step']} | {_fmt(p['d0'])} | {_fmt(p['dl'])} | {_fmt(p['dend'])} | "
                         f"{onset} | {p['verdict']} |")
        counts = "; ".join(f"{model} {m['finding_4_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
                           if "finding_4_seeds" in m)
        lines += ["", f"Finding 4 ({FINDING_4_HOLDS!r}, less than half of a fall of at least {FINDING_4_FALL:g} iteration "
                      f"before the learned step, nothing forcing it): {counts}."]
    twins = result["findings"].get("iteration_loss_phases")
    if twins:
        lines += ["", "The iteration loss and the order of the phases (protocol v6, amended: each controller with the "
                      "iteration loss beside its twin with the paper's objective, v4's verdicts):", "",
                  "| seed | " + " | ".join(twins["pairs"]) + " |", "|---" * (len(twins["pairs"]) + 1) + "|"]
        for seed in sorted({s for pair in twins["pairs"].values() for s in pair}):
            lines.append(f"| {seed} | " + " | ".join(" / ".join(str(v) for v in pair[seed]) if seed in pair else "-"
                                                     for pair in twins["pairs"].values()) + " |")
        lines += ["", f"The iteration loss makes ANIRA-O's compute fall first (its verdict 'compute fell first', its twin's "
                      f"not; needed in at least 2 of 3 seeds): {twins['holds_seeds']} of {twins['seeds']} seeds."]
    curve = result.get("operating_curve")
    if curve:
        lines += ["", f"Depth pays for ANIRA-O at a halting threshold chosen on validation (protocol v3, the same weights "
                      f"at thresholds 0.1-0.9): {curve['pays_seeds']} of {curve['seeds']} seeds; every threshold and seed: "
                      f"[{curve['file']}]({curve['file']})."]
    needed = result["findings"].get("depth_needed")
    if needed:
        lines += ["", depth_needed_line(needed)]
    if result["findings"]:
        f = result["findings"]
        if "finding_5_seeds" in f:  # the MANO grids carry finding 3 (both grids) before a seed pair of their own
            lines += ["", f"Finding 5 (ANIRA-O as accurate as ANIRA-E, within {FINDING_5_TOLERANCE}, with fewer iterations): "
                          f"{f['finding_5_seeds']} of {f['finding_5_pairs']} seeds."]
        if "finding_3_seeds" in f:
            lines += ["", "| seed | ANIRA-O execution-state share | ANIRA-E execution-state share | holds |", "|---|---|---|---|"]
            online, early = result["models"]["anira-o"]["seeds"], result["models"]["anira-e"]["seeds"]
            for seed in sorted(set(online) & set(early), key=int):
                o, e = online[seed], early[seed]
                key = "execution_state_share_all_tokens"
                cell = lambda n: f"{_fmt(n[key], 3)} [{_fmt(n[key + '_interval'][0], 3)}, {_fmt(n[key + '_interval'][1], 3)}]"  # noqa: E731
                lines.append(f"| {seed} | {cell(o)} | {cell(e)} | {'yes' if finding_3(o, e) else 'no'} |")
            lines += ["", "Finding 3 (ANIRA-O's execution-state share of depth variance above ANIRA-E's, intervals apart, "
                          f"seen sizes): {f['finding_3_seeds']} of {f['finding_5_pairs']} seeds."]
    if "finding_3_marker" in result["findings"]:
        lines += ["", format_mano_marker(result["findings"]["finding_3_marker"])]
    return "\n".join(lines)


def format_mano_marker(finding: dict) -> str:
    """Markdown: finding 3 on MANO, one row per seed with its four runs, then the count and the pending seeds."""
    lines = [f"Finding 3 on MANO (rho(depth, l) on seen sizes, with the marker `<l=..>`: grid `{finding['grids']['marker']}`, "
             f"with `<q>`: grid `{finding['grids']['no_marker']}`). Rule: {finding['rule']}.", ""]

    def drop(value, interval) -> str:
        return _fmt(value) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")

    def cell(r: dict) -> str:
        return drop(r["rho"], r["interval"])

    if finding["seeds"]:
        lines += ["| seed | ANIRA-E rho, marker | ANIRA-E rho, `<q>` | ANIRA-E drop | ANIRA-O rho, marker | ANIRA-O rho, `<q>` | "
                  "ANIRA-O drop | drops' difference | holds |", "|---|---|---|---|---|---|---|---|---|"]
        for seed, d in finding["seeds"].items():
            r = d["rho_seen"]
            lines.append(f"| {seed} | {cell(r['e_marker'])} | {cell(r['e_no_marker'])} | "
                         f"{drop(d['early_drop'], d['early_drop_interval'])} | {cell(r['o_marker'])} | {cell(r['o_no_marker'])} | "
                         f"{drop(d['online_drop'], d['online_drop_interval'])} | {drop(d['difference'], d['difference_interval'])} | "
                         f"{'yes' if d['holds'] else 'no'}: {d['why']} |")
        lines += ["", f"Finding 3 on MANO holds in {finding['holds_seeds']} of {finding['decided_seeds']} seeds with all four runs."]
    else:
        lines.append("No seed has all four runs (anira-e and anira-o in both grids) yet.")
    if finding["pending"]:
        lines += ["", "Pending: " + "; ".join(f"seed {p['seed']}: {', '.join(p['missing'])}" for p in finding["pending"]) + "."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the figures over seeds
BAND = "min-max over seeds"  # what every band of the study's figures spans (a t-interval of 3 seeds is 4.3 sd wide)
FIGURES = {"complexity": "accuracy_depth", "allocated_needed": "depth_allocated_needed", "dynamics": "training_dynamics"}


def band(values: dict[int, float]) -> dict:
    """One quantity over seeds: {"seeds" {seed: value}, "mean", "min", "max", "count"}; seeds whose value is missing
    or NaN (an undefined rho) are left out and not counted."""
    finite = {seed: float(v) for seed, v in sorted(values.items()) if v is not None and v == v}
    if not finite:
        return {"seeds": {}, "mean": float("nan"), "min": float("nan"), "max": float("nan"), "count": 0}
    numbers = list(finite.values())
    return {"seeds": finite, "mean": sum(numbers) / len(numbers), "min": min(numbers), "max": max(numbers),
            "count": len(numbers)}


def _sizes(summary: dict, split: str) -> list[int]:
    return sorted(int(c) for c in summary["report"].get(split, {"per_complexity": {}})["per_complexity"])


def _probe_curves(logs: dict[int, list[dict]], sizes: list[int]) -> dict:
    """Per size, the probe's accuracy and depth over steps, one band per logged step over the seeds that logged it."""
    metric = "answer_exact" if all(f"probe/answer_exact@{sizes[0]}" in log[0] for log in logs.values() if log) else "accuracy"
    steps = sorted({r["step"] for log in logs.values() for r in log})
    by_step = {seed: {r["step"]: r for r in log} for seed, log in logs.items()}

    def over(key: str) -> list[dict]:
        return [band({seed: records[step].get(key) for seed, records in by_step.items() if step in records}) for step in steps]

    return {"accuracy_metric": f"probe/{metric}@<size>", "steps": steps, "sizes": sizes,
            "accuracy": {c: over(f"probe/{metric}@{c}") for c in sizes}, "depth": {c: over(f"probe/depth@{c}") for c in sizes}}


def study_curves(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
                 seeds=SEEDS) -> dict:
    """What the study's figures draw, from the finished runs' reports and probe logs (nothing is run): per model and
    size the test accuracy, the mean answer depth and the oracle depth of the depth-need analysis, and per size the
    validation probe's accuracy and depth over steps, each a `band` over seeds; the grid's missing runs."""
    version = version or protocol_version(task)
    from .analysis import read_probe_log
    from .trainer import PROBE_LOG_FILE

    folders, missing = grid_state(task, study_dir, version, quick, seeds)
    if not folders:
        raise ValueError(f"no finished run of protocol {version} in {study_dir / task / RUNS_FILE} (missing: "
                         f"{', '.join(m['run'] for m in missing)}): run `examples/study.py run --task {task}` first")
    finished = {key: json.loads((folder / "report.json").read_text()) for key, folder in folders.items()}
    train_sizes = sorted({c for summary in finished.values() for c in summary["train_sizes"]})
    models = {}
    for model in dict.fromkeys(model for model, _ in finished):
        runs = {seed: summary for (m, seed), summary in finished.items() if m == model}
        sizes = sorted({c for summary in runs.values() for split in (SEEN, UNSEEN) for c in _sizes(summary, split)})

        def per_size(value) -> dict[int, dict]:
            return {c: band({seed: value(summary, str(c)) for seed, summary in runs.items()}) for c in sizes}

        def evaluated(key):
            return lambda summary, c: next((summary["report"][split]["per_complexity"][c][key] for split in (SEEN, UNSEEN)
                                            if c in summary["report"].get(split, {}).get("per_complexity", {})), None)

        oracle = per_size(lambda summary, c: (summary.get("depth_need") or {}).get("per_complexity", {})
                          .get(c, {}).get("oracle", {}).get("mean_depth"))
        logs = {seed: read_probe_log(folders[(model, seed)] / PROBE_LOG_FILE) for seed in runs
                if (folders[(model, seed)] / PROBE_LOG_FILE).exists()}
        models[model] = {
            "seeds": sorted(runs), "max_depth": max(summary["max_depth"] for summary in runs.values()),
            "accuracy": per_size(evaluated("generated_accuracy")), "depth": per_size(evaluated("mean_depth")),
            "oracle_depth": oracle if any(b["count"] for b in oracle.values()) else None,
            "dynamics": _probe_curves(logs, train_sizes) if any(logs.values()) else None,
        }
    return {"task": task, "protocol_version": version, "quick": quick, "band": BAND, "train_sizes": train_sizes,
            "finished": [run_name(*key) for key in finished], "missing": missing, "models": models}


def missing_note(curves: dict) -> str:
    """One line for a figure or a printout: which runs of the grid are not drawn, and why."""
    if not curves["missing"]:
        return f"all {len(curves['finished'])} runs of the grid drawn"
    by_model: dict[str, list[str]] = {}
    for m in curves["missing"]:
        by_model.setdefault(m["model"], []).append(str(m["seed"]))
    return (f"grid in progress: {len(curves['finished'])} runs drawn; missing "
            + "; ".join(f"{model} seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for model, s in by_model.items()))


def study_figures(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
                  seeds=SEEDS) -> dict:
    """The study's three figures of a task (whatever part of the grid has finished), in `study_dir/<task>/`:
    accuracy and depth against size (the paper's figure 3), allocated against needed depth for ANIRA-E and ANIRA-O
    (figure 2), the validation probe over training (figures 4-5). {"paths", "missing", "note"}."""
    version = version or protocol_version(task)
    from .figures import plot_study_allocated_needed, plot_study_complexity, plot_study_dynamics

    curves = study_curves(task, study_dir, version, quick, seeds)
    suffix = "-quick" if quick else ""
    out = study_dir / task
    paths = [plot_study_complexity(curves, out / f"{FIGURES['complexity']}{suffix}.png"),
             plot_study_allocated_needed(curves, out / f"{FIGURES['allocated_needed']}{suffix}.png"),
             plot_study_dynamics(curves, out / f"{FIGURES['dynamics']}{suffix}.png")]
    return {"paths": paths, "missing": curves["missing"], "note": missing_note(curves), "curves": curves}


# ----------------------------------------------------------------------------- the study's answer, for the main job
def _range(stat: dict | None) -> str:
    if not stat:
        return "-"
    return f"{_fmt(stat['mean'])} ({_span(stat)}, {stat['seeds']} seed{'s' if stat['seeds'] > 1 else ''})"


def study_answer(task: str, study_dir: Path = STUDY_DIR, version: str | None = None) -> dict:
    """What the main job shows before its own short run: the study's finished runs of `task` (seed 0, the shipped
    run, beside the range over seeds, with the depth-need gains and the findings' seed counts), or, while none has
    finished, that the study is pending. {"status": "results" | "pending" | "no grid", "text", ...}; the numbers come
    from the runs' reports (the study's own test prompts), nothing is evaluated here."""
    if task not in GRIDS:
        return {"status": "no grid", "task": task, "protocol": PROTOCOL_FILE,
                "text": f"The replicated study ({PROTOCOL_FILE}) has no grid for {task} (its grids: {', '.join(GRIDS)})."}
    version = version or protocol_version(task)
    folders, missing = grid_state(task, study_dir, version)
    expected = grid_size(task)
    if not folders:
        return {"status": "pending", "task": task, "protocol": PROTOCOL_FILE, "missing": [m["run"] for m in missing],
                "text": f"The replicated study's runs on {task} are pending: none of its {expected} runs (protocol {version}, "
                        f"{PROTOCOL_FILE}) has finished, so it has no result yet. "
                        + (f"`python examples/study.py search --task {GRIDS[task]['search']}` chooses its recipe, then "
                           if "search" in GRIDS[task] else "")
                        + f"`python examples/study.py run --task {task}` trains them; until then the numbers below are "
                        "one short run's, not the study's."}
    result = study_summary(task, study_dir, version)
    curves = study_curves(task, study_dir, version)
    lines = [f"| model | seed {SHIPPED_SEED}: seen accuracy | seen depth | rho(depth, size), seen | unseen accuracy | "
             "adaptive gain | oracle gain (matched) | over seeds: seen accuracy | rho, seen | adaptive gain | F1 holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {model: i for i, model in enumerate(grid_models(task))}
    result["models"] = dict(sorted(result["models"].items(), key=lambda item: order.get(item[0], len(order))))
    for model, m in result["models"].items():
        n = m["seeds"].get(str(SHIPPED_SEED))
        adaptive = MODELS[model][0] != "fixed"
        if n is None:
            first = [f"seed {SHIPPED_SEED} pending"] + ["-"] * 5
        else:
            rho, gain = rho_cell(n), gain_cell(n) if adaptive else "-"
            first = [_fmt(n["pooled_seen_accuracy"]), _fmt(n["pooled_seen_depth"]), rho,
                     " / ".join(_fmt(v) for v in n["unseen_accuracy"].values()) or "-", gain, _fmt(n["oracle_gain_matched"])]
        f1 = f"{m['finding_1_seeds']} of {len(m['seeds'])}" if "finding_1_seeds" in m else "-"
        lines.append(f"| {model} | " + " | ".join(first) + f" | {_range(m['pooled_seen_accuracy'])} | {_range(m['rho_seen'])} | "
                     f"{_range(m['adaptive_gain']) if adaptive else '-'} | {f1} |")
    seen = ", ".join(str(c) for c in curves["train_sizes"])
    head = (f"The replicated study ({PROTOCOL_FILE}, protocol {version}) on {task}: {len(folders)} of {expected} runs finished"
            + (f"; still missing: {', '.join(m['run'] for m in missing)}" if missing else "") + ". "
            f"Seed {SHIPPED_SEED} of anira-e, anira-o and fixed-6 is the run the protocol ships in hub_configs; the ranges are "
            f"over every finished seed. Its test prompts are the study's own (sizes {seen} seen in training), not this job's; "
            "gains from the depth-need analysis on the seen sizes (compute of the cheapest uniform depth at the same "
            "accuracy over the model's own).")
    findings = result["findings"]
    tail = [f"Finding 1 (seen accuracy >= {FINDING_1_ACCURACY} and rho >= {FINDING_1_RHO}): "
            + "; ".join(f"{model} {m['finding_1_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
                        if "finding_1_seeds" in m) + "."] if any("finding_1_seeds" in m for m in result["models"].values()) else []
    if "finding_5_seeds" in findings:
        tail.append(f"Finding 5 (ANIRA-O as accurate with fewer iterations): {findings['finding_5_seeds']} of "
                    f"{findings['finding_5_pairs']} seeds.")
    pays = [f"{model} {m['depth_pays_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
            if "depth_pays_seeds" in m]
    if pays:
        tail.append("Depth pays (adaptive gain with its interval above 1): " + "; ".join(pays) + ".")
    if "depth_needed" in findings:
        tail.append(depth_needed_line(findings["depth_needed"]))
    return {"status": "results", "task": task, "protocol": PROTOCOL_FILE, "runs": len(folders), "expected": expected,
            "missing": [m["run"] for m in missing], "table": "\n".join(lines),
            "text": "\n\n".join([head, "\n".join(lines), *tail]), "summary": {k: v for k, v in result.items() if k != "markdown"},
            "curves": curves}
