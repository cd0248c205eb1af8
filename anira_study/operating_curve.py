"""ANIRA-O's operating curve: the same weights at every halting threshold, against the same weights at every
uniform depth, and a threshold chosen on the validation split (experiments/study/PROTOCOL.md, version 3).

ANIRA-O halts a token once its halting probability reaches `halting_threshold` (0.5 in training). No weight depends
on the threshold, so a trained folder loads at any other (`from_pretrained(folder, halting_threshold=tau)`): a lower
threshold halts earlier and spends less, a higher one more. Per threshold the curve holds what v1's depth-need
analysis holds for the trained threshold (`anira_study.depth_need`): accuracy of the greedily generated answer,
mean depth at the answer positions, compute in layer applications per answer token, and the adaptive gain (compute
of the cheapest uniform depth whose accuracy reaches the threshold's, over the threshold's compute) with its
bootstrap interval over prompts. Everything is pooled over the seen sizes.

`choose_threshold` is the protocol's rule, applied to the validation curve only: among the thresholds whose
accuracy is at least the best uniform depth's minus `margin`, the cheapest (a tie goes to the higher threshold).
The test curve then reports the gain at that threshold. Running the models (`threshold_records`,
`operating_curve_for_folder`) is apart from the pure functions over their records (`curve`, `choose_threshold`).
"""

import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

import modeling_anira  # noqa: F401  (registers the Auto classes: a study run's folder holds no code)
from anira_tasks import TaskSpec, build_dataset_dict
from anira_tasks.dataset import VALIDATION

from .depth_need import (
    depth_need_records,
    depth_need_summary,
    generation_records,
    heldout_test_rows,
    uniform_depth_records,
)
from .evaluation import folder_task_spec

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TRAINED_THRESHOLD = 0.5
MARGIN = 0.01  # a threshold qualifies when its validation accuracy is at least the best uniform depth's minus this
PROMPTS_PER_SIZE = 200  # validation and test prompts per seen size
QUICK_PROMPTS_PER_SIZE = 4
PROTOCOL_VERSION = "v3"
RESULT_FILE = "operating_curve.json"  # in each covered run's folder
RULE = (f"among the thresholds whose pooled seen validation accuracy is at least the best uniform depth's minus {MARGIN}, "
        "the one with the least validation compute (a tie goes to the higher threshold); none when no threshold qualifies")


# ----------------------------------------------------------------------------- pure functions over records
def curve(rows: list[dict], uniform: list[dict], by_threshold: dict[float, list[dict]], layers: Sequence[int],
          min_depth: int = 1, resamples: int = 1000, seed: int = 0) -> dict:
    """{"uniform": [per depth t: accuracy, compute, ...], "thresholds": [per tau: accuracy, interval, mean_depth,
    compute, gain]} over `rows` (one group of prompts), from `uniform_depth_records` and, per threshold,
    `generation_records` of the model loaded at that threshold."""
    if not by_threshold:
        raise ValueError("an operating curve needs at least one threshold's records")
    points, summary = [], None
    for tau, adaptive in sorted(by_threshold.items()):
        summary = depth_need_summary(depth_need_records(rows, uniform, adaptive, min_depth), layers, min_depth, resamples, seed)
        a = summary["adaptive"]
        points.append({"threshold": tau, "correct": a["correct"], "accuracy": a["accuracy"], "interval": a["interval"],
                       "mean_depth": a["mean_depth"], "compute": a["compute"], "gain": a["gain"]})
    return {"prompts": summary["prompts"], "uniform": summary["uniform"], "thresholds": points}


def choose_threshold(validation: dict, margin: float = MARGIN) -> dict:
    """The protocol's rule (`RULE`) on a validation `curve`: {"threshold" (None when none qualifies), "best_uniform"
    (the most accurate uniform depth, the cheapest of ties), "bar" (its accuracy minus `margin`), "qualifying"}."""
    best = max(validation["uniform"], key=lambda entry: (entry["accuracy"], -entry["compute"]))
    bar = best["accuracy"] - margin
    qualifying = [point for point in validation["thresholds"] if point["accuracy"] >= bar - 1e-12]
    chosen = min(qualifying, key=lambda point: (point["compute"], -point["threshold"])) if qualifying else None
    return {"threshold": None if chosen is None else chosen["threshold"], "rule": RULE,
            "best_uniform": {"depth": best["depth"], "accuracy": best["accuracy"], "compute": best["compute"]},
            "bar": bar, "qualifying": [point["threshold"] for point in qualifying]}


def point_at(curve_: dict, threshold: float | None) -> dict | None:
    """The curve's point at `threshold` (None for None)."""
    if threshold is None:
        return None
    for point in curve_["thresholds"]:
        if math.isclose(point["threshold"], threshold):
            return point
    raise ValueError(f"the curve has no threshold {threshold}: it holds {[p['threshold'] for p in curve_['thresholds']]}")


def pays(gain: dict | None) -> bool:
    """Depth pays at a point: the gain is defined and its interval's lower end is above 1."""
    return gain is not None and gain["uniform_depth"] is not None and gain["interval"][0] > 1


def pays_at_choice(result: dict) -> bool:
    """Depth pays at the threshold the rule chose on validation (not when it chose none), on test."""
    return result["at_choice"] is not None and pays(result["at_choice"]["gain"])


# ----------------------------------------------------------------------------- running a folder's model
def validation_rows(model_dir: str | Path, per_size: int = PROMPTS_PER_SIZE) -> list[dict]:
    """`per_size` validation prompts per seen size of the folder's task: its validation split rebuilt with `per_size`
    prompts per size. They come from the validation bucket of the prompt space, which no training or test prompt is
    drawn from (so a one-row training split builds them in less time); one draw stream runs through the sizes, so
    only the first size's prompts begin with those of the smaller split the training probe read."""
    spec = folder_task_spec(model_dir)
    if not isinstance(spec, TaskSpec):
        raise ValueError(f"{model_dir}: the operating curve rebuilds the validation split from the folder's task spec, "
                         f"but the folder names a saved dataset ({spec})")
    data = build_dataset_dict(replace(spec, num_train=1, num_validation=per_size), num_proc=1)
    return [{**row, "split": VALIDATION} for row in data[VALIDATION]]


def threshold_records(model_dir: str | Path, rows: list[dict], tokenizer, thresholds: Sequence[float] = THRESHOLDS,
                      batch_size: int = 64, device: str | None = None) -> dict[float, list[dict]]:
    """Per threshold, `generation_records` of the folder's ANIRA-O loaded with `halting_threshold=tau`."""
    from transformers import AutoModelForCausalLM

    _require_online(model_dir)
    records = {}
    for tau in thresholds:
        model = AutoModelForCausalLM.from_pretrained(model_dir, halting_threshold=tau).to(device or "cpu")
        records[tau] = generation_records(model, rows, tokenizer, batch_size)
    return records


def _require_online(model_dir: str | Path):
    """The folder's config, refused unless it is an ANIRA-O (the only mode with a halting threshold)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    if config.depth_mode != "online":
        raise ValueError(f"{model_dir}: an operating curve needs an ANIRA-O (depth_mode 'online') model, "
                         f"got depth_mode={config.depth_mode!r}")
    return config


def operating_curve_for_folder(model_dir: str | Path, thresholds: Sequence[float] = THRESHOLDS,
                               per_size: int = PROMPTS_PER_SIZE, batch_size: int = 64, resamples: int = 1000,
                               device: str | None = None) -> dict:
    """The protocol's analysis of one trained ANIRA-O folder: the validation and test curves (seen sizes), the
    threshold the rule chooses on validation, and on test the points at it and at the trained threshold."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = _require_online(model_dir)  # before the rows are built and the uniform depths run
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    fixed = AutoModelForCausalLM.from_pretrained(model_dir, depth_mode="fixed").to(device)
    layers = (config.num_prelude_layers, config.num_core_layers, config.num_coda_layers)
    seen = validation_rows(model_dir, per_size)
    sizes = sorted({row["complexity"] for row in seen})
    groups = {"validation": seen, "test": heldout_test_rows(model_dir, sizes=sizes, num_prompts=per_size)}
    curves = {}
    for name, rows in groups.items():
        uniform = uniform_depth_records(fixed, rows, tokenizer, batch_size)
        by_threshold = threshold_records(model_dir, rows, tokenizer, thresholds, batch_size, device)
        curves[name] = curve(rows, uniform, by_threshold, layers, config.min_depth, resamples)
    choice = choose_threshold(curves["validation"])
    return {
        "sizes": sizes, "prompts_per_size": per_size, "thresholds": list(thresholds),
        "compute_unit": "layer applications per answer token: prelude + core * depth + coda",
        "validation": curves["validation"], "test": curves["test"], "choice": choice,
        "at_choice": point_at(curves["test"], choice["threshold"]),
        "at_trained": point_at(curves["test"], TRAINED_THRESHOLD) if TRAINED_THRESHOLD in thresholds else None,
    }


# ----------------------------------------------------------------------------- a grid's ANIRA-O runs
def operating_curve_grid(task: str, study_dir: Path | None = None, quick: bool = False, force: bool = False,
                         device: str | None = None) -> dict:
    """The analysis of every finished `anira-o` run of a grid (every seed of the grid's protocol version in runs.json),
    each written to its run folder's `operating_curve.json` once (again with `force`), then the grid's
    `operating_curve.md` and figure. Returns {"runs": {seed: result}, "pays_seeds", "markdown", "figure"}."""
    from . import study
    from .reproduce import machine, provenance

    study_dir = Path(study_dir or study.STUDY_DIR)
    entries = _anira_o_runs(task, study_dir, quick)
    results = {}
    for entry in sorted(entries, key=lambda r: r["seed"]):
        path = study_dir / task / entry["folder"] / RESULT_FILE
        if force or not path.exists():
            start = time.time()
            result = operating_curve_for_folder(path.parent, per_size=QUICK_PROMPTS_PER_SIZE if quick else PROMPTS_PER_SIZE,
                                                resamples=100 if quick else 1000, device=device)
            result = {"run": entry["run"], "seed": entry["seed"], "run_protocol_version": entry["protocol_version"],
                      "protocol_version": PROTOCOL_VERSION, **result,
                      "command": f"python examples/study.py operating-curve --task {task}" + (" --quick" if quick else ""),
                      "machine": machine(), "commit": provenance()["training_commit"], "seconds": round(time.time() - start, 1),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            path.write_text(json.dumps(result, indent=2) + "\n")
        results[entry["seed"]] = json.loads(path.read_text())
    pays_seeds = sum(pays_at_choice(r) for r in results.values())
    markdown = format_operating_curves(task, results)
    out = study_dir / task
    (out / ("operating_curve-quick.md" if quick else "operating_curve.md")).write_text(markdown + "\n")
    figure = plot_operating_curves(task, results, out / ("operating_curve-quick.png" if quick else "operating_curve.png")) if results else None
    return {"runs": results, "pays_seeds": pays_seeds, "markdown": markdown, "figure": figure}


def _anira_o_runs(task: str, study_dir: Path, quick: bool) -> list[dict]:
    """The grid's anira-o lines of runs.json at its protocol version (quick or not)."""
    from . import study

    return [r for r in study.read_runs(task, study_dir) if r["model"] == "anira-o" and r.get("quick", False) == quick
            and r["protocol_version"] == study.protocol_version(task)]


def grid_counts(task: str, study_dir: Path, quick: bool = False) -> dict | None:
    """What the grid's results.md says of this analysis: {"file", "pays_seeds", "seeds"} over the anira-o runs that
    have a result, None when none has."""
    results = [json.loads(path.read_text()) for r in _anira_o_runs(task, study_dir, quick)
               if (path := study_dir / task / r["folder"] / RESULT_FILE).exists()]
    if not results:
        return None
    return {"file": "operating_curve-quick.md" if quick else "operating_curve.md", "seeds": len(results),
            "pays_seeds": sum(pays_at_choice(r) for r in results)}


def card_section(result: dict) -> list[str]:
    """Markdown lines for a shipped ANIRA-O's card: its test accuracy and depth at every threshold beside its weights
    at every uniform depth, the threshold the study's rule chose on validation, and how to load it."""
    test, choice = result["test"], result["choice"]
    chosen = "no threshold qualified" if choice["threshold"] is None else f"it chose {choice['threshold']:g}"
    return [
        "## At other halting thresholds", "",
        "No weight depends on the halting threshold, so this model loads at any other: "
        "`AutoModelForCausalLM.from_pretrained(path, halting_threshold=0.3)` halts earlier, a higher threshold later "
        f"(trained at {TRAINED_THRESHOLD}). Pooled over the seen sizes, {test['prompts']} test prompts; the same weights at "
        "every uniform depth below. The study's rule picks a threshold on the validation split "
        f"(experiments/study/PROTOCOL.md, version 3: {RULE}); {chosen}. Gain: compute of the cheapest uniform depth "
        f"reaching the accuracy, over the threshold's own. Measured {result['date']} on {result['machine']} with "
        f"`{result['command']}`.", "",
        "| threshold | " + " | ".join(f"{p['threshold']:g}" for p in test["thresholds"]) + " |",
        "|---|" + "---|" * len(test["thresholds"]),
        "| accuracy | " + " | ".join(f"{p['accuracy']:.3f}" for p in test["thresholds"]) + " |",
        "| mean depth | " + " | ".join(f"{p['mean_depth']:.2f}" for p in test["thresholds"]) + " |",
        "| gain | " + " | ".join(_gain_text(p["gain"]).split(" (t=")[0] for p in test["thresholds"]) + " |", "",
        "| uniform depth | " + " | ".join(str(u["depth"]) for u in test["uniform"]) + " |",
        "|---|" + "---|" * len(test["uniform"]),
        "| accuracy | " + " | ".join(f"{u['accuracy']:.3f}" for u in test["uniform"]) + " |",
    ]


def _gain_text(gain: dict | None) -> str:
    if gain is None:
        return "-"
    if gain["uniform_depth"] is None:
        return "undefined (above every uniform depth)"
    low, high = gain["interval"]
    return f"{gain['value']:.2f} [{low:.2f}, {high:.2f}] (t={gain['uniform_depth']})"


def _point_text(point: dict | None) -> str:
    return "-" if point is None else f"{point['accuracy']:.3f} at {point['mean_depth']:.2f}"


def format_operating_curves(task: str, results: dict[int, dict]) -> str:
    """Markdown: per seed the rule's choice on validation and, on test, the points at it and at the trained
    threshold; the count of seeds where depth pays at the chosen threshold; every seed's test curve."""
    lines = [f"# {task}: ANIRA-O's operating curve (protocol {PROTOCOL_VERSION})", "",
             "The same weights at halting thresholds 0.1-0.9 and at every uniform depth, pooled over the seen sizes "
             "(experiments/study/PROTOCOL.md, version 3). The threshold is chosen on the validation split: " + RULE + ". "
             "Test accuracy at a mean answer depth; the gain is compute (layer applications per answer token) of the "
             "cheapest uniform depth reaching that accuracy over the threshold's own, with a bootstrap interval over "
             "prompts.", ""]
    if not results:
        return "\n".join(lines + ["No finished anira-o run yet."])
    lines += ["| seed | best uniform depth on validation | chosen threshold | test: at the chosen threshold | gain there | "
              "test: at 0.5 (trained) | gain there | depth pays |", "|---|---|---|---|---|---|---|---|"]
    for seed, r in sorted(results.items()):
        best, tau = r["choice"]["best_uniform"], r["choice"]["threshold"]
        chosen = r["at_choice"]
        lines.append(f"| {seed} | t={best['depth']} ({best['accuracy']:.3f}) | {'none' if tau is None else tau} | "
                     f"{_point_text(chosen)} | {_gain_text(chosen['gain'] if chosen else None)} | "
                     f"{_point_text(r['at_trained'])} | {_gain_text(r['at_trained']['gain'] if r['at_trained'] else None)} | "
                     f"{'yes' if pays_at_choice(r) else 'no'} |")
    count = sum(pays_at_choice(r) for r in results.values())
    from .study import SEEDS

    verdict = ("holds" if count == len(SEEDS) else "does not hold" if count + len(SEEDS) - len(results) < len(SEEDS)
               else "is undecided")
    lines += ["", f"Depth pays at a validated threshold (the gain's interval above 1): {count} of {len(results)} seeds, so "
                  f"it {verdict} for the task (the rule: {len(SEEDS)} of {len(SEEDS)} seeds).", ""]
    for seed, r in sorted(results.items()):
        test = r["test"]
        lines += [f"Seed {seed}, test ({test['prompts']} prompts, sizes {r['sizes']}; {r['machine']}, {r['date']}):", "",
                  "| | " + " | ".join(f"t={u['depth']}" for u in test["uniform"]) + " |",
                  "|---|" + "---|" * len(test["uniform"]),
                  "| uniform accuracy | " + " | ".join(f"{u['accuracy']:.3f}" for u in test["uniform"]) + " |", "",
                  "| threshold | " + " | ".join(str(p["threshold"]) for p in test["thresholds"]) + " |",
                  "|---|" + "---|" * len(test["thresholds"]),
                  "| accuracy | " + " | ".join(f"{p['accuracy']:.3f}" for p in test["thresholds"]) + " |",
                  "| mean depth | " + " | ".join(f"{p['mean_depth']:.2f}" for p in test["thresholds"]) + " |",
                  "| gain | " + " | ".join(_gain_text(p["gain"]).split(" (t=")[0] for p in test["thresholds"]) + " |", ""]
    return "\n".join(lines).rstrip()


def plot_operating_curves(task: str, results: dict[int, dict], path: str | Path) -> Path:
    """Test accuracy against compute, one panel per seed: the uniform depths and the thresholds, the chosen one
    marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import _save_figure

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (seed, r) in zip(axes[0], sorted(results.items())):
        test = r["test"]
        ax.plot([u["compute"] for u in test["uniform"]], [u["accuracy"] for u in test["uniform"]], "s-", color="0.4",
                label="uniform depth t")
        for u in test["uniform"]:
            ax.annotate(str(u["depth"]), (u["compute"], u["accuracy"]), textcoords="offset points", xytext=(3, 3), fontsize=7)
        points = test["thresholds"]
        ax.plot([p["compute"] for p in points], [p["accuracy"] for p in points], "o-", color="tab:blue",
                label="halting threshold")
        for p in points:
            ax.annotate(f"{p['threshold']:g}", (p["compute"], p["accuracy"]), textcoords="offset points", xytext=(3, -9),
                        fontsize=7, color="tab:blue")
        if r["at_choice"] is not None:
            ax.plot(r["at_choice"]["compute"], r["at_choice"]["accuracy"], "*", color="tab:red", markersize=13,
                    label="chosen on validation")
        ax.set_title(f"{task} anira-o, seed {seed}")
        ax.set_xlabel("layer applications per answer token")
        ax.set_ylabel("test accuracy, seen sizes")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save_figure(fig, path)
