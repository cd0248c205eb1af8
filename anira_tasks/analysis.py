"""Where the compute goes: per-complexity reports, figures, training dynamics and depth feature importance.

- `evaluation_report`: per split and per complexity, teacher-forced token and answer accuracy, accuracy of
  the greedily generated answer (task scorer), mean depth at the positions that predict answer tokens,
  and Spearman's rho between that depth and complexity (the package's `evaluate` metric modules).
- `plot_complexity`: complexity against accuracy and against mean depth, training sizes shaded, several
  models (ANIRA-E, ANIRA-O) side by side.
- `plot_training_dynamics`: per-complexity accuracy and mean depth over training steps from the probe log,
  with the learning phase and the compute-reduction phase marked.
- `depth_feature_importance`: regress per-token depth on static features (graph size, node degree) and
  algorithmic-state features (frontier size, newly enabled nodes, DFS depth), each one-hot encoded, and
  split the explained variance between the two groups (exact Shapley values of a two-player game, so
  the shares add up to the full model's R^2).
"""

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .dataset import TaskSpec, build_dataset_dict
from .metrics import load_metric
from .training import answer_records, generated_correct, summarize_by_complexity

EVAL_SPLITS = ("test_seen", "test_interpolation", "test_extrapolation")
SPLIT_LABELS = {"test_seen": "seen", "test_interpolation": "interp.", "test_extrapolation": "unseen"}
# Feature groups per task (annotation columns); see DESIGN.md finding 3.
FEATURE_GROUPS = {
    "brevo": {"static": ["num_nodes", "in_degree", "out_degree"],
              "algorithmic_state": ["frontier_size", "newly_enabled", "node_depth"]},
    "topological_sort": {"static": ["size", "node_degree"],
                         "algorithmic_state": ["dfs_depth", "kahn_frontier_size", "kahn_newly_enabled"]},
}


# ----------------------------------------------------------------------------- evaluation
def load_eval_data(model_dir: str | Path, dataset_path: str | None = None):
    """(DatasetDict, training sizes) of a folder saved by `examples/train.py`: its `anira_data.json`
    rebuilds exactly the data it was trained on (or names the saved DatasetDict it used)."""
    import datasets

    if dataset_path is None:
        spec = json.loads((Path(model_dir) / "anira_data.json").read_text())
        if "dataset_path" not in spec:
            spec = TaskSpec(**spec)
            return build_dataset_dict(spec), list(spec.train_sizes)
        dataset_path = spec["dataset_path"]
    data = datasets.load_from_disk(dataset_path)
    return data, sorted(set(data["train"]["complexity"]))


def cap_per_size(data, limit: int | None):
    """At most `limit` rows per complexity in every split (quicker evaluations)."""
    import datasets

    if limit is None:
        return data
    capped = {}
    for split, dataset in data.items():
        seen, keep = defaultdict(int), []
        for index, complexity in enumerate(dataset["complexity"]):
            seen[complexity] += 1
            if seen[complexity] <= limit:
                keep.append(index)
        capped[split] = dataset.select(keep)
    return datasets.DatasetDict(capped)


def evaluation_report(model, data, tokenizer, splits=EVAL_SPLITS, batch_size: int = 64, generate: bool = True,
                      keep_records: bool = False) -> dict:
    """{split: {"overall", "per_complexity", "spearman", "p_value"}, "all": {"spearman", ...}} for one model."""
    spearman = load_metric("depth_complexity_spearman")
    accuracy = load_metric("complexity_accuracy")
    report, all_depths, all_complexities = {}, [], []
    for split in splits:
        if split not in data:
            continue
        rows = data[split].to_list()
        records = answer_records(model, rows, tokenizer, batch_size)
        generated = generated_correct(model, rows, tokenizer, batch_size) if generate else None
        summary = summarize_by_complexity(records, generated)
        depths = [d for r in records for d in r["depths"]]
        complexities = [r["complexity"] for r in records for _ in r["depths"]]
        correlation = spearman.compute(predictions=depths, references=complexities)
        # The accuracies reported are the metric module's (correctness against 1, grouped by complexity).
        scored = {"token_accuracy": ([int(c) for r in records for c in r["token_correct"]], complexities),
                  "answer_accuracy": ([int(r["answer_correct"]) for r in records], [r["complexity"] for r in records])}
        if generated is not None:
            scored["generated_accuracy"] = ([int(g) for g in generated], [r["complexity"] for r in records])
        for name, (correct, groups) in scored.items():
            result = accuracy.compute(predictions=correct, references=[1] * len(correct), complexities=groups)
            summary["overall"][name] = result["accuracy"]
            for c, value in result["accuracy_per_complexity"].items():
                summary["per_complexity"][c][name] = value
        report[split] = {**summary, "spearman": correlation["spearman"], "p_value": correlation["p_value"]}
        if keep_records:
            report[split]["records"] = [{**r, **{k: rows[i][k] for k in rows[i] if isinstance(rows[i][k], list) and k not in ("input_ids", "labels")}}
                                        for i, r in enumerate(records)]
        all_depths += depths
        all_complexities += complexities
    correlation = spearman.compute(predictions=all_depths, references=all_complexities)
    report["all"] = {"spearman": correlation["spearman"], "p_value": correlation["p_value"]}
    return report


def _fmt(value: float, digits: int = 2) -> str:
    return "  nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(reports: dict[str, dict]) -> str:
    """A plain-text table: one row per (split, complexity), per model token / generated accuracy and depth."""
    names = list(reports)
    header = f"{'split':8} {'c':>3}  " + "  ".join(f"{name:^26}" for name in names)
    sub = f"{'':8} {'':>3}  " + "  ".join(f"{'tok.acc':>8} {'gen.acc':>8} {'depth':>7}" for _ in names)
    lines = [header, sub, "-" * len(sub)]
    first = reports[names[0]]
    for split in EVAL_SPLITS:
        if split not in first:
            continue
        for c in first[split]["per_complexity"]:
            cells = []
            for name in names:
                values = reports[name][split]["per_complexity"].get(c, {})
                cells.append(f"{_fmt(values.get('token_accuracy')):>8} {_fmt(values.get('generated_accuracy', float('nan'))):>8} "
                             f"{_fmt(values.get('mean_depth')):>7}")
            lines.append(f"{SPLIT_LABELS[split]:8} {c:>3}  " + "  ".join(cells))
    lines.append("-" * len(sub))
    for split in [s for s in EVAL_SPLITS if s in first] + ["all"]:
        cells = [f"{'rho(depth, c) = ' + _fmt(reports[name][split]['spearman']):>26}" for name in names]
        lines.append(f"{SPLIT_LABELS.get(split, split):8} {'':>3}  " + "  ".join(cells))
    return "\n".join(lines)


def _save_figure(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_complexity(reports: dict[str, dict], train_sizes, path: str | Path, title: str = "") -> Path:
    """Two panels: accuracy (generated, or teacher-forced tokens) and mean answer depth against complexity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_depth) = plt.subplots(1, 2, figsize=(11, 4))
    for name, report in reports.items():
        points = sorted((c, v) for split in EVAL_SPLITS if split in report for c, v in report[split]["per_complexity"].items())
        xs = [c for c, _ in points]
        key = "generated_accuracy" if "generated_accuracy" in points[0][1] else "token_accuracy"
        ax_acc.plot(xs, [v[key] for _, v in points], marker="o", label=f"{name}")
        ax_depth.plot(xs, [v["mean_depth"] for _, v in points], marker="o",
                      label=f"{name} (rho = {_fmt(report['all']['spearman'])})")
    for ax in (ax_acc, ax_depth):
        for size in train_sizes:
            ax.axvspan(size - 0.5, size + 0.5, color="0.9", zorder=0)
        ax.axvline(max(train_sizes) + 0.5, color="0.5", linestyle="--", linewidth=1)
        ax.set_xlabel("complexity (shaded: training sizes; right of the dashed line: unseen)")
        ax.legend(fontsize=8)
    ax_acc.set_ylabel("accuracy (generated answer)")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_depth.set_ylabel("mean depth at answer-predicting positions")
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- training dynamics
def read_probe_log(path: str | Path) -> list[dict]:
    """The JSON lines `DepthProbeCallback` wrote; a resumed run's repeated steps keep the last record."""
    by_step = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def training_phases(records: list[dict], accuracy_level: float = 0.9) -> dict:
    """Step where seen-size accuracy first reaches `accuracy_level` of its final value (end of the learning
    phase), and the mean depth then and at the end (the compute-reduction phase is what follows)."""
    if not records:
        return {}
    accuracy = [r["probe/token_accuracy"] for r in records]
    depth = [r["probe/answer_depth"] for r in records]
    target = accuracy_level * max(accuracy)
    learned_at = next(i for i, a in enumerate(accuracy) if a >= target)
    rhos = [(r[key], r["step"]) for r in records if (key := "probe/depth_spearman") in r]
    peak_rho, peak_step = max(rhos) if rhos else (float("nan"), None)
    return {
        "peak_depth_spearman": peak_rho,
        "peak_depth_spearman_step": peak_step,
        "learned_step": records[learned_at]["step"],
        "depth_when_learned": depth[learned_at],
        "final_depth": depth[-1],
        "max_depth_seen": max(depth),
        "final_accuracy": accuracy[-1],
        "depth_reduction": depth[learned_at] - depth[-1],
    }


def plot_training_dynamics(logs: dict[str, list[dict]], path: str | Path) -> Path:
    """Per model: accuracy per complexity (top), mean depth per complexity (middle, grey: the compute penalty)
    and Spearman's rho of depth and complexity on the probe (bottom) over steps; the dotted line ends the
    learning phase (see `training_phases`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(logs), figsize=(5.5 * len(logs), 8.5), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 3, 1.5]})
    for column, (name, records) in enumerate(logs.items()):
        steps = [r["step"] for r in records]
        complexities = sorted({int(k.split("@")[1]) for r in records for k in r if k.startswith("probe/accuracy@")})
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(complexities)))
        for color, c in zip(colors, complexities):
            axes[0, column].plot(steps, [r.get(f"probe/accuracy@{c}", np.nan) for r in records], color=color, label=f"c = {c}")
            axes[1, column].plot(steps, [r.get(f"probe/depth@{c}", np.nan) for r in records], color=color, label=f"c = {c}")
        phases = training_phases(records)
        for ax in axes[:, column]:
            if phases:
                ax.axvline(phases["learned_step"], color="k", linestyle=":", linewidth=1)
        penalty_axis = axes[1, column].twinx()
        penalty_axis.plot(steps, [r.get("probe/compute_penalty", np.nan) for r in records], color="0.6", linewidth=1)
        penalty_axis.set_ylabel("compute_penalty", color="0.5")
        axes[0, column].set_title(f"{name}: learning phase | compute-reduction phase")
        axes[0, column].set_ylabel("probe accuracy (teacher forced)")
        axes[1, column].set_ylabel("mean answer depth")
        axes[2, column].plot(steps, [r.get("probe/depth_spearman", np.nan) for r in records], color="k", marker=".")
        axes[2, column].axhline(0.0, color="0.7", linewidth=1)
        axes[2, column].set_ylabel("rho(depth, c)")
        axes[2, column].set_xlabel("training step")
        axes[0, column].legend(fontsize=7, ncol=2)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- feature importance
def token_table(report_records: list[dict], features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(X, depth) with one row per answer token whose features are all defined (>= 0; CLRS marks
    structure symbols with -1)."""
    rows, depths = [], []
    for record in report_records:
        for k, depth in enumerate(record["depths"]):
            values = [record[name][k] for name in features]
            if min(values) >= 0 and depth >= 0:
                rows.append(values)
                depths.append(depth)
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(features)), np.asarray(depths, dtype=float)


def _r2(X: np.ndarray, y: np.ndarray, columns: list[int]) -> float:
    """In-sample R^2 of a least-squares regression of y on the one-hot encoded (categorical) columns."""
    if not columns or y.var() == 0:
        return 0.0
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import OneHotEncoder

    encoded = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit_transform(X[:, columns])
    return float(LinearRegression().fit(encoded, y).score(encoded, y))


def depth_feature_importance(records: list[dict], groups: dict[str, list[str]]) -> dict:
    """Share of the variance of per-token depth explained by each feature group.

    Two groups A, B: the full model explains R^2(A+B); each group's Shapley share is
    phi_A = (R^2(A) + R^2(A+B) - R^2(B)) / 2, so phi_A + phi_B = R^2(A+B). Also reported: each group alone
    and each feature alone (all one-hot encoded). NaN shares when depth is constant (nothing to explain).
    """
    names = list(groups)
    features = [f for name in names for f in groups[name]]
    X, y = token_table(records, features)
    index = {f: i for i, f in enumerate(features)}
    columns = {name: [index[f] for f in groups[name]] for name in names}
    result = {"tokens": int(len(y)), "depth_variance": float(y.var()) if len(y) else float("nan")}
    if len(y) < 2 or y.var() == 0:
        return result | {"r2_full": float("nan"), "share": {n: float("nan") for n in names},
                         "r2_alone": {n: float("nan") for n in names}, "r2_feature": {f: float("nan") for f in features}}
    full = _r2(X, y, list(range(len(features))))
    alone = {name: _r2(X, y, columns[name]) for name in names}
    if len(names) == 2:
        a, b = names
        share = {a: (alone[a] + full - alone[b]) / 2, b: (alone[b] + full - alone[a]) / 2}
    else:  # leave-one-group-out contributions, rescaled to sum to the full R^2
        drop = {name: full - _r2(X, y, [c for other in names if other != name for c in columns[other]]) for name in names}
        total = sum(drop.values()) or 1.0
        share = {name: full * value / total for name, value in drop.items()}
    return result | {"r2_full": full, "share": share, "r2_alone": alone,
                     "r2_feature": {f: _r2(X, y, [index[f]]) for f in features}}


def per_feature_mean_depth(records: list[dict], feature: str) -> dict[int, float]:
    sums, counts = defaultdict(float), defaultdict(int)
    for record in records:
        for k, depth in enumerate(record["depths"]):
            value = record[feature][k]
            if value >= 0:
                sums[value] += depth
                counts[value] += 1
    return {int(v): sums[v] / counts[v] for v in sorted(counts)}
