"""The per-run numbers the study's analyses read, and the protocol's rules for when each finding holds
(experiments/study/PROTOCOL.md, "What counts as a finding holding", and its later versions' sections).

`run_numbers` reads one run's report.json; `finding_1`, `finding_2`, `finding_3`, `finding_5` and `depth_pays` apply one
rule to one seed's numbers, `finding_4_phases` to one run's probe log, `depth_needed` to the fixed-depth runs over seeds,
and `mano_marker_finding` reads finding 3 across the two MANO grids. Nothing here writes a file: `study_report` counts
the seeds each finding holds in and writes them down.
"""

import json
from pathlib import Path

from .reproduce import _get
from .study import RUNS_FILE, SEEDS, SEEN, STUDY_DIR, UNSEEN, grid_state, run_name

FINDING_1_ACCURACY, FINDING_1_RHO = 0.9, 0.6  # PROTOCOL.md, "What counts as a finding holding"
FINDING_2_DROP = 0.3
FINDING_5_TOLERANCE = 0.02
GAIN_GOAL = 1.25


def run_numbers(summary: dict) -> dict:
    """The per-run numbers the protocol's analyses read, from a run's report.json."""
    report, need = summary["report"], summary["depth_need"]
    seen = report[SEEN]
    unseen = report.get(UNSEEN, {"per_complexity": {}})
    numbers = {
        "seen_accuracy": {int(c): v["generated_accuracy"] for c, v in seen["per_complexity"].items()},
        "seen_depth": {int(c): v["mean_depth"] for c, v in seen["per_complexity"].items()},
        "unseen_accuracy": {int(c): v["generated_accuracy"] for c, v in unseen["per_complexity"].items()},
        "unseen_depth": {int(c): v["mean_depth"] for c, v in unseen["per_complexity"].items()},
        "pooled_seen_accuracy": seen["overall"]["generated_accuracy"], "pooled_seen_depth": seen["overall"]["mean_depth"],
        "rho_seen": seen["spearman"], "rho_seen_interval": seen.get("spearman_interval"),
    }
    importance = summary.get("feature_importance")
    if importance:
        for scope in ("all_tokens", "inside_prompts"):
            numbers[f"execution_state_share_{scope}"] = importance[scope]["share"]["execution_state"]
            numbers[f"execution_state_share_{scope}_interval"] = importance[scope]["share_interval"]["execution_state"]
    largest = need.get("per_complexity", {}).get(str(max(numbers["seen_accuracy"])), {}).get("uniform")
    numbers["largest_seen_uniform"] = {u["depth"]: u["accuracy"] for u in largest} if largest else None
    need_seen = need["per_split"].get(SEEN, need["overall"])
    numbers["uniform_seen_accuracy"] = {u["depth"]: u["accuracy"] for u in need_seen["uniform"]}
    numbers["oracle_gain_matched"] = need_seen["oracle"]["gain_matched"]["value"]
    compiled = _get(summary.get("train_args") or [], "--compile_model") == "true"  # protocol v5: how it trained
    numbers["training_forward"] = "compiled" if compiled else "eager"
    if "adaptive" in need_seen:
        adaptive = need_seen["adaptive"]
        numbers |= {"adaptive_gain": adaptive["gain"]["value"], "adaptive_gain_interval": adaptive["gain"]["interval"],
                    "rho_allocated_oracle": adaptive["rho"], "given_less": adaptive["allocation"]["less"]["share"],
                    "given_more": adaptive["allocation"]["more"]["share"]}
    return numbers


def curriculum_steps(summary: dict, events: list[dict]) -> dict[int, int | dict | None] | None:
    """The step from which a run trained on each seen size: the smallest from step 0, each other from the probe step the
    curriculum unlocked it; None: never (the run never trained on it); `{"by": step}` where the log holds no unlock of
    the size but one of a larger size at `step` (sizes unlock in order; runs started before unlocks were logged as
    events lack the early ones). None for a run without a curriculum (every seen size from step 0). `events`: the
    run's `curriculum_unlock` records (`analysis.read_probe_events`)."""
    if _get(summary.get("train_args") or [], "--curriculum_accuracy") is None:
        return None
    sizes = sorted(int(c) for c in summary["report"][SEEN]["per_complexity"])
    unlocked = {}
    for event in events:
        unlocked.setdefault(int(event["unlocked_size"]), event["step"])
    steps, later = {}, None
    for size in reversed(sizes):
        if size == sizes[0]:
            steps[size] = 0
        elif size in unlocked:
            steps[size] = later = unlocked[size] if later is None else min(unlocked[size], later)
        else:
            steps[size] = None if later is None else {"by": later}
    return {size: steps[size] for size in sizes}


def sizes_never_trained(steps: dict | None) -> list[int]:
    """The seen sizes `curriculum_steps` says a run never trained on (none for a run without a curriculum)."""
    return [size for size, step in (steps or {}).items() if step is None]


def run_folder_numbers(folder: Path) -> dict:
    """`run_numbers` of a finished run's folder (its report.json), with `trained_from_step`: `curriculum_steps` from
    the unlock events of its probe log."""
    from .analysis import read_probe_events
    from .curriculum import UNLOCK_EVENT
    from .trainer import PROBE_LOG_FILE

    summary = json.loads((folder / "report.json").read_text())
    log = folder / PROBE_LOG_FILE
    events = read_probe_events(log, UNLOCK_EVENT) if log.exists() else []
    return run_numbers(summary) | {"trained_from_step": curriculum_steps(summary, events)}


def penalty_onset(records: list[dict]) -> int | None:
    """The first probe step at which an adaptive run's compute penalty was above 0 (the gate opens when the validation
    probe's pooled token accuracy reaches 0.9, then ramps), None when it never was: such a run trained on the LM and
    iteration losses alone. `records`: its probe log (`analysis.read_probe_log`)."""
    return next((r["step"] for r in records if r.get("probe/compute_penalty", 0) > 0), None)


FINDING_4_FALL = 1.0  # protocol v4: a compute phase is a fall of the mean answer depth of at least one iteration
FINDING_4_HOLDS = "learn, then cut compute"


def finding_4_phases(records: list[dict]) -> dict | None:
    """Protocol v4's finding 4 for one adaptive run, from its validation probe log's records: the learned step (pooled token
    accuracy first at 0.9 of its maximum, `analysis.training_phases`), the mean answer depth at the first probe (d0),
    at the learned step (dl) and at the last (dend), the penalty's onset, and the verdict: "forced" (the penalty came
    on by the learned step), "no compute phase" (d0 - dend below `FINDING_4_FALL`), FINDING_4_HOLDS (less than half
    of the fall before the learned step) or "compute fell first". None without a probe log that logged the pooled
    token accuracy and answer depth."""
    from .analysis import training_phases

    if not records or any("probe/token_accuracy" not in r or "probe/answer_depth" not in r for r in records):
        return None
    phases = training_phases(records)
    d0, dl, dend = records[0]["probe/answer_depth"], phases["depth_when_learned"], phases["final_depth"]
    onset = penalty_onset(records)
    if onset is not None and onset <= phases["learned_step"]:
        verdict = "forced"
    elif d0 - dend < FINDING_4_FALL:
        verdict = "no compute phase"
    else:
        verdict = FINDING_4_HOLDS if d0 - dl < (d0 - dend) / 2 else "compute fell first"
    return {"learned_step": phases["learned_step"], "d0": d0, "dl": dl, "dend": dend, "penalty_from_step": onset,
            "verdict": verdict}


# Protocol v6 as amended: each controller with the iteration loss beside its twin with the paper's objective (no
# iteration loss), read through v4's verdicts; the declared rule is ANIRA-O's pair.
ITERATION_LOSS_PAIRS = (("anira-o", "anira-o-paper"), ("anira-e", "anira-e-paper"))
ITERATION_LOSS_FALL_FIRST = "compute fell first"


def iteration_loss_phases(per_model: dict[str, dict[int, dict]]) -> dict | None:
    """Whether the iteration loss makes compute fall before learning: per seed that has both runs of a pair, v4's
    verdict with the iteration loss and without it; ANIRA-O's seed holds where its verdict is "compute fell first"
    and its twin's is not. {"pairs": {"with / without": {seed: [verdict, verdict]}}, "holds_seeds", "seeds"} (the
    counts ANIRA-O's pair's), or None when no twin has run."""
    def verdict(model: str, seed: int) -> str | None:
        return (per_model[model][seed].get("phases") or {}).get("verdict")

    pairs = {}
    for with_loss, without in ITERATION_LOSS_PAIRS:
        seeds = sorted(set(per_model.get(with_loss, {})) & set(per_model.get(without, {})))
        if seeds:
            pairs[f"{with_loss} / {without}"] = {seed: [verdict(with_loss, seed), verdict(without, seed)] for seed in seeds}
    if not pairs:
        return None
    online = pairs.get("anira-o / anira-o-paper", {})
    holds = [a == ITERATION_LOSS_FALL_FIRST and b != ITERATION_LOSS_FALL_FIRST for a, b in online.values()]
    return {"pairs": pairs, "holds_seeds": sum(holds), "seeds": len(holds)}


def finding_1(n: dict) -> bool:
    """Depth follows complexity: every seen size answered >= 0.9 and rho(depth, size) on seen sizes >= 0.6."""
    return min(n["seen_accuracy"].values()) >= FINDING_1_ACCURACY and n["rho_seen"] >= FINDING_1_RHO


def finding_2(n: dict) -> bool:
    """No extrapolation: every unseen size's accuracy >= 0.3 below the mean seen accuracy, while the depth at
    every unseen size is at least the depth at the largest seen size."""
    if not n["unseen_accuracy"]:
        return False
    mean_seen = sum(n["seen_accuracy"].values()) / len(n["seen_accuracy"])
    largest = n["seen_depth"][max(n["seen_depth"])]
    return all(a <= mean_seen - FINDING_2_DROP for a in n["unseen_accuracy"].values()) and \
        all(d >= largest for d in n["unseen_depth"].values())


def depth_pays(n: dict) -> bool:
    """Depth pays: the adaptive gain (the compute of the cheapest uniform depth that reaches the model's accuracy,
    over its own) above 1 with its interval above 1."""
    interval = n.get("adaptive_gain_interval")
    return n.get("adaptive_gain") is not None and interval is not None and interval[0] > 1


def depth_needed(per_model: dict[str, dict[int, dict]], seeds=SEEDS) -> dict | None:
    """Depth is needed on the task: `fixed-1`'s accuracy at the largest seen size below 0.9 in at least 2 of 3 seeds,
    and the uniform-depth accuracy of `fixed-6`'s weights at that size rising with t, read as higher at t = max_depth
    than at t = 1, in at least 2 of 3 seeds as well. `holds` is None while the seeds still to come could decide it."""
    if "fixed-1" not in per_model and "fixed-6" not in per_model:
        return None
    need = len(seeds) - 1  # 2 of 3
    largest = {seed: n["seen_accuracy"][max(n["seen_accuracy"])] for seed, n in sorted(per_model.get("fixed-1", {}).items())}
    shallow = [accuracy < FINDING_1_ACCURACY for accuracy in largest.values()]
    curves = [n.get("largest_seen_uniform") for n in per_model.get("fixed-6", {}).values()]
    rising = [c[max(c)] > c[min(c)] for c in curves if c]
    met = [sum(shallow) >= need, sum(rising) >= need]
    possible = [sum(shallow) + len(seeds) - len(shallow) >= need, sum(rising) + len(seeds) - len(rising) >= need]
    holds = True if all(met) else False if not all(possible) else None
    untrained = [seed for seed, n in sorted(per_model.get("fixed-1", {}).items())
                 if max(n["seen_accuracy"]) in sizes_never_trained(n.get("trained_from_step"))]
    return {"fixed_1_largest_accuracy": largest, "fixed_1_below": sum(shallow), "fixed_1_seeds": len(shallow),
            "fixed_1_never_trained_there": untrained, "fixed_6_rising": sum(rising), "fixed_6_seeds": len(rising),
            "holds": holds}


def finding_5(online: dict, early: dict) -> bool:
    """ANIRA-O reaches ANIRA-E's accuracy (within 0.02, pooled over seen sizes) with fewer iterations."""
    return online["pooled_seen_accuracy"] >= early["pooled_seen_accuracy"] - FINDING_5_TOLERANCE and \
        online["pooled_seen_depth"] < early["pooled_seen_depth"]


def finding_3(online: dict, early: dict, scope: str = "all_tokens") -> bool | None:
    """ANIRA-O's execution-state share of depth variance above ANIRA-E's, the intervals apart (seen sizes);
    None where the task has no execution-state annotations."""
    key = f"execution_state_share_{scope}"
    if key not in online or key not in early:
        return None
    return online[f"{key}_interval"][0] > early[f"{key}_interval"][1]


# Finding 3 on MANO (PROTOCOL.md, version 2): one grid with the length marker `<l=..>`, one with `<q>` in its place;
# per protocol version that declared such a pair.
MANO_MARKER_GRIDS = {"v2": {"marker": "mano", "no_marker": "mano-no-marker"},
                     "v9": {"marker": "mano-v9", "no_marker": "mano-v9-no-marker"}}


def mano_marker_pair(task: str) -> dict | None:
    """The pair of MANO grids (`MANO_MARKER_GRIDS`) that grid `task` belongs to, or None."""
    return next((pair for pair in MANO_MARKER_GRIDS.values() if task in pair.values()), None)


MANO_MARKER_RULE = ("per seed, rho(depth, l) on seen sizes of ANIRA-E and ANIRA-O in both grids; drop = rho with the marker "
                    "minus rho with `<q>`; holds when (a) ANIRA-E's rho falls beyond its intervals (its interval with the "
                    "marker wholly above its interval with `<q>`) and (b) the drops' difference (ANIRA-E's drop minus "
                    "ANIRA-O's) is above 0 at its point and at the low end of its interval from the four runs' intervals "
                    "(interval arithmetic, each at its worst end, no bootstrap over runs); an undefined rho or a missing "
                    "interval does not hold")


def finding_3_marker(early_marker: dict, early_plain: dict, online_marker: dict, online_plain: dict) -> dict:
    """Finding 3 on MANO in one seed, from four runs' numbers (`run_numbers`: "rho_seen", "rho_seen_interval"): with
    the marker, l is one token ANIRA-E's router can read before any computation; with `<q>` it must be inferred, so
    ANIRA-E's rho(depth, l) should fall more than ANIRA-O's when the marker is removed. The rule is `MANO_MARKER_RULE`.

    The drops' interval is the conservative, bootstrap-free combination of the four runs' bootstrap intervals over
    prompts: low = (E_marker_low - E_plain_high) - (O_marker_high - O_plain_low), high the other way round. It is
    wider than a joint bootstrap would give; (a) asks that ANIRA-E's own fall is beyond its intervals, so that a rise
    of ANIRA-O's rho alone does not make the finding hold. Returns {"early_drop", "online_drop", "difference",
    "early_drop_interval", "online_drop_interval", "difference_interval", "early_apart", "holds", "why"}."""
    runs = {"ANIRA-E with the marker": early_marker, "ANIRA-E with <q>": early_plain,
            "ANIRA-O with the marker": online_marker, "ANIRA-O with <q>": online_plain}
    undefined = [name for name, n in runs.items() if n["rho_seen"] is None or n["rho_seen"] != n["rho_seen"]]
    no_interval = [name for name, n in runs.items() if not n.get("rho_seen_interval")
                   or any(v is None or v != v for v in n["rho_seen_interval"])]
    if undefined or no_interval:
        why = "; ".join(([f"rho undefined (constant depth) for {', '.join(undefined)}"] if undefined else [])
                        + ([f"no rho interval for {', '.join(no_interval)}"] if no_interval else []))
        return {"early_drop": None, "online_drop": None, "difference": None, "early_drop_interval": None,
                "online_drop_interval": None, "difference_interval": None, "early_apart": None, "holds": False, "why": why}
    (em, el, eh), (pm, pl, ph) = [(n["rho_seen"], *n["rho_seen_interval"]) for n in (early_marker, early_plain)]
    (om, ol, oh), (qm, ql, qh) = [(n["rho_seen"], *n["rho_seen_interval"]) for n in (online_marker, online_plain)]
    early_drop, online_drop = em - pm, om - qm
    early_drop_interval = [el - ph, eh - pl]
    online_drop_interval = [ol - qh, oh - ql]
    difference = early_drop - online_drop
    interval = [early_drop_interval[0] - online_drop_interval[1], early_drop_interval[1] - online_drop_interval[0]]
    early_apart = early_drop_interval[0] > 0
    holds = early_apart and difference > 0 and interval[0] > 0
    why = ("ANIRA-E's rho falls beyond its intervals and the drops' difference is above 0 with its interval" if holds else
           "ANIRA-E's rho intervals with and without the marker overlap" if not early_apart else
           "the drops' difference is not above 0" if difference <= 0 else
           "the drops' difference interval reaches 0")
    return {"early_drop": early_drop, "online_drop": online_drop, "difference": difference,
            "early_drop_interval": early_drop_interval, "online_drop_interval": online_drop_interval,
            "difference_interval": interval, "early_apart": early_apart, "holds": holds, "why": why}


def mano_marker_finding(grids: dict, study_dir: Path = STUDY_DIR, quick: bool = False, seeds=SEEDS) -> dict:
    """Finding 3 on MANO over seeds, across a pair of MANO grids (`grids`, one of `MANO_MARKER_GRIDS`): per seed whose
    four runs (anira-e and anira-o in the grid with the marker and in the one without) have finished, their seen-size
    rho with its interval and `finding_3_marker`'s verdict; the other seeds (every seed of `seeds`, and any other seed with one of the four
    runs) are pending, each with the runs it lacks and why. {"rule", "seeds" {seed: {...}}, "holds_seeds",
    "decided_seeds", "pending" [{"seed", "missing"}]}; nothing is run or written."""
    models = ("anira-e", "anira-o")
    finished, missing = {}, {}
    for variant, grid in grids.items():
        folders, lacking = grid_state(grid, study_dir, quick=quick, seeds=seeds)
        for (model, seed), folder in folders.items():
            if model in models:
                finished[(variant, model, seed)] = folder
        missing |= {(variant, m["model"], m["seed"]): m["why"] for m in lacking if m["model"] in models}
    every_seed = sorted({seed for _, _, seed in finished} | set(seeds))
    decided, pending = {}, []
    for seed in every_seed:
        keys = [(variant, model, seed) for model in models for variant in grids]
        if not all(key in finished for key in keys):
            pending.append({"seed": seed, "missing": [
                f"{grids[v]}/{run_name(m, s)} ({missing.get((v, m, s), f'no line in {RUNS_FILE}')})"
                for v, m, s in keys if (v, m, s) not in finished]})
            continue
        numbers = {key: run_numbers(json.loads((finished[key] / "report.json").read_text())) for key in keys}
        sizes = {key: sorted(n["seen_accuracy"]) for key, n in numbers.items()}
        if len({tuple(v) for v in sizes.values()}) > 1:
            raise ValueError(f"MANO seed {seed}: the four runs' seen sizes differ ("
                             + ", ".join(f"{grids[v]}/{run_name(m, s)}: {sizes[(v, m, s)]}" for v, m, s in keys)
                             + "); finding 3 compares rho on the same seen sizes")
        rho = {f"{model.replace('anira-', '')}_{variant}": {"rho": numbers[(variant, model, seed)]["rho_seen"],
                                                             "interval": numbers[(variant, model, seed)]["rho_seen_interval"]}
               for model in models for variant in grids}
        decided[str(seed)] = {"rho_seen": rho, **finding_3_marker(
            numbers[("marker", "anira-e", seed)], numbers[("no_marker", "anira-e", seed)],
            numbers[("marker", "anira-o", seed)], numbers[("no_marker", "anira-o", seed)])}
    return {"grids": grids, "rule": MANO_MARKER_RULE, "seeds": decided,
            "holds_seeds": sum(d["holds"] for d in decided.values()), "decided_seeds": len(decided), "pending": pending}
