"""Figures drawn from reports and logs (nothing is computed here that a report does not hold).

- `plot_complexity`: complexity against accuracy and against mean answer depth, with 95 % intervals,
  training sizes shaded, several models side by side.
- `plot_training_dynamics`: per-complexity accuracy and mean depth over training steps from the probe
  log, the compute penalty, and rho(depth, complexity) on the probe, the end of the learning phase marked.
"""

import math
from pathlib import Path

import numpy as np

from .analysis import training_phases
from .evaluation import EVAL_SPLITS


def fmt(value: float, digits: int = 2) -> str:
    return "  nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _save_figure(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_complexity(reports: dict[str, dict], train_sizes, path: str | Path, title: str = "") -> Path:
    """Two panels: accuracy (generated, or teacher-forced tokens) and mean answer depth against complexity,
    each point with its 95 % interval (the report's `intervals`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_depth) = plt.subplots(1, 2, figsize=(11, 4))
    _complexity_panels(ax_acc, ax_depth, reports, train_sizes)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)


def _complexity_panels(ax_acc, ax_depth, reports: dict[str, dict], train_sizes) -> None:
    for name, report in reports.items():
        points = sorted((c, v) for split in EVAL_SPLITS if split in report for c, v in report[split]["per_complexity"].items())
        xs = [c for c, _ in points]
        key = "generated_accuracy" if "generated_accuracy" in points[0][1] else "token_accuracy"
        for ax, metric, label in ((ax_acc, key, name), (ax_depth, "mean_depth", f"{name} (rho seen = {fmt(report.get('test_seen', {}).get('spearman', report['all']['spearman']))})")):
            values = np.array([v[metric] for _, v in points], dtype=float)
            bounds = np.array([v.get("intervals", {}).get(metric, [np.nan, np.nan]) for _, v in points], dtype=float)
            errors = np.nan_to_num(np.abs(bounds.T - values), nan=0.0)
            ax.errorbar(xs, values, yerr=errors, marker="o", capsize=3, label=label)
    for ax in (ax_acc, ax_depth):
        for size in train_sizes:
            ax.axvspan(size - 0.5, size + 0.5, color="0.9", zorder=0)
        ax.axvline(max(train_sizes) + 0.5, color="0.5", linestyle="--", linewidth=1)
        ax.set_xlabel("complexity (shaded: training sizes; right of the dashed line: unseen)")
        ax.legend(fontsize=8)
    ax_acc.set_ylabel("accuracy (generated answer)")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_depth.set_ylabel("mean depth at answer-predicting positions")


def plot_training_dynamics(logs: dict[str, list[dict]], path: str | Path, stage_starts: dict[str, list[int]] | None = None,
                           log_missing_until: dict[str, int] | None = None, phases: dict[str, dict] | None = None) -> Path:
    """Per model: accuracy per complexity (top), mean depth per complexity (middle, grey: the compute penalty)
    and Spearman's rho of depth and complexity on the probe (bottom) over steps; the dotted line ends the
    learning phase (see `training_phases`; `phases` gives it where the log alone cannot). `stage_starts` marks
    where a staged recipe's later stages began (dashed grey: a fresh learning-rate schedule starts there);
    `log_missing_until` shades the steps before it, whose probe log was not kept."""
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
        phase = (phases or {}).get(name) or training_phases(records)
        starts = (stage_starts or {}).get(name, [])
        missing = (log_missing_until or {}).get(name)
        for ax in axes[:, column]:
            if phase:
                ax.axvline(phase["learned_step"], color="k", linestyle=":", linewidth=1)
            for start in starts:
                ax.axvline(start, color="0.5", linestyle="--", linewidth=1)
            if missing:
                ax.axvspan(0, missing, color="0.92", linewidth=0)
        if missing:
            axes[0, column].text(missing / 2, 0.5, "probe log\nnot kept", ha="center", va="center", color="0.4", fontsize=9,
                                 transform=axes[0, column].get_xaxis_transform())  # x in steps, y in axes fraction
        penalty_axis = axes[1, column].twinx()
        penalty_axis.plot(steps, [r.get("probe/compute_penalty", np.nan) for r in records], color="0.6", linewidth=1)
        penalty_axis.set_ylabel("compute_penalty", color="0.5")
        axes[0, column].set_title(f"{name}: validation probe\n(dotted: 90 % of final accuracy"
                                  + ("; dashed: a stage starts)" if starts else ")"), fontsize=10)
        axes[0, column].set_ylabel("probe accuracy (teacher forced)")
        axes[1, column].set_ylabel("mean answer depth")
        axes[2, column].plot(steps, [r.get("probe/depth_spearman", np.nan) for r in records], color="k", marker=".")
        axes[2, column].axhline(0.0, color="0.7", linewidth=1)
        axes[2, column].set_ylabel("rho(depth, c)")
        axes[2, column].set_xlabel("training step")
        axes[0, column].legend(fontsize=7, ncol=2)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- the replicated study (anira_study.study_report)
def _study_axes(rows: int, columns: int, width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)


def _band(ax, xs, bands: list[dict], label: str, color, linestyle: str = "-", marker: str | None = "o") -> None:
    """A line through the seeds' mean and a shaded band from their minimum to their maximum."""
    mean = np.array([b["mean"] for b in bands], dtype=float)
    ax.plot(xs, mean, color=color, linestyle=linestyle, marker=marker, label=label)
    ax.fill_between(xs, [b["min"] for b in bands], [b["max"] for b in bands], color=color, alpha=0.2, linewidth=0)


def _mark_sizes(ax, train_sizes, label: bool = True) -> None:
    for size in train_sizes:
        ax.axvspan(size - 0.5, size + 0.5, color="0.92", zorder=0)
    ax.axvline(max(train_sizes) + 0.5, color="0.5", linestyle="--", linewidth=1)
    if label:
        ax.set_xlabel("size (shaded: seen in training; right of the dashed line: unseen)")


def _study_caption(fig, curves: dict, what: str) -> None:
    from .study_report import missing_note

    import textwrap

    note = textwrap.fill(f"line: mean over seeds; band: {curves['band']}; {missing_note(curves)}",
                         int(fig.get_figwidth() * 15))
    fig.suptitle(f"{curves['task']} study, protocol {curves['protocol_version']}{' (quick runs)' if curves['quick'] else ''}: "
                 f"{what}\n{note}", fontsize=9)


def _colors(names) -> dict:
    import matplotlib.pyplot as plt

    return {name: plt.cm.tab10(i) for i, name in enumerate(names)}


def plot_study_complexity(curves: dict, path: str | Path) -> Path:
    """The paper's figure 3 over seeds: test accuracy (generated answer) and mean answer depth against size, one
    line per model, seen and unseen sizes marked (`anira_study.study_report.study_curves`)."""
    fig, axes = _study_axes(1, 2, 5.5, 4.3)
    colors = _colors(curves["models"])
    for name, model in curves["models"].items():
        sizes = sorted(model["accuracy"])
        label = f"{name} ({len(model['seeds'])} seed{'s' if len(model['seeds']) > 1 else ''})"
        _band(axes[0, 0], sizes, [model["accuracy"][c] for c in sizes], label, colors[name])
        _band(axes[0, 1], sizes, [model["depth"][c] for c in sizes], label, colors[name])
    for ax in axes[0]:
        _mark_sizes(ax, curves["train_sizes"])
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("test accuracy (greedy generated answer)")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[0, 1].set_ylabel("mean depth at answer-predicting positions")
    _study_caption(fig, curves, "accuracy and depth against size")
    return _save_figure(fig, path)


def plot_study_allocated_needed(curves: dict, path: str | Path) -> Path:
    """The paper's figure 2 over seeds: ANIRA-E and ANIRA-O side by side, the depth each allocates against size,
    beside the depth its own weights need (the depth-need analysis' oracle depth, where the reports hold it)."""
    fig, axes = _study_axes(1, 2, 5.5, 4.3)
    for ax, (name, title) in zip(axes[0], (("anira-e", "ANIRA-E"), ("anira-o", "ANIRA-O"))):
        model = curves["models"].get(name)
        ax.set_title(f"{title} ({name})", fontsize=10)
        _mark_sizes(ax, curves["train_sizes"])
        if model is None:
            ax.text(0.5, 0.5, f"no finished run of {name} yet", ha="center", va="center", transform=ax.transAxes)
            continue
        sizes = sorted(model["depth"])
        seeds = f"{len(model['seeds'])} seed{'s' if len(model['seeds']) > 1 else ''}"
        _band(ax, sizes, [model["depth"][c] for c in sizes], f"allocated ({seeds})", "tab:blue")
        if model["oracle_depth"] is not None:
            sizes = sorted(model["oracle_depth"])
            _band(ax, sizes, [model["oracle_depth"][c] for c in sizes], "needed: oracle depth of the same weights",
                  "tab:orange", linestyle="--", marker="s")
        else:
            ax.text(0.5, 0.05, "no depth-need analysis in these reports", ha="center", transform=ax.transAxes, fontsize=8)
        ax.set_ylim(0, model["max_depth"] + 0.5)
        ax.set_ylabel("mean depth at answer-predicting positions")
        ax.legend(fontsize=8)
    _study_caption(fig, curves, "allocated against needed depth (the oracle depth: the smallest uniform depth that answers a "
                                "prompt; a prompt no depth answers counts at min_depth)")
    return _save_figure(fig, path)


def plot_study_dynamics(curves: dict, path: str | Path) -> Path:
    """The paper's figures 4-5 over seeds: per model (columns), the validation probe's accuracy (top) and mean
    answer depth (bottom) per training size against the training step, from each run's probe log."""
    import matplotlib.pyplot as plt

    logged = {name: model for name, model in curves["models"].items() if model["dynamics"]}
    if not logged:
        raise ValueError(f"no probe log in any finished run of {curves['task']} ({', '.join(curves['finished'])})")
    fig, axes = _study_axes(2, len(logged), 4.2, 3.6)
    for column, (name, model) in enumerate(logged.items()):
        dynamics = model["dynamics"]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(dynamics["sizes"])))
        for color, c in zip(colors, dynamics["sizes"]):
            _band(axes[0, column], dynamics["steps"], dynamics["accuracy"][c], f"size {c}", color, marker=None)
            _band(axes[1, column], dynamics["steps"], dynamics["depth"][c], f"size {c}", color, marker=None)
        axes[0, column].set_title(f"{name} ({len(model['seeds'])} seed{'s' if len(model['seeds']) > 1 else ''})", fontsize=10)
        axes[0, column].set_ylim(-0.02, 1.02)
        axes[1, column].set_ylim(0, model["max_depth"] + 0.5)
        axes[1, column].set_xlabel("training step")
        axes[0, column].legend(fontsize=7)
    axes[0, 0].set_ylabel(f"validation probe accuracy\n({next(iter(logged.values()))['dynamics']['accuracy_metric']}, "
                          "teacher forced)", fontsize=8)
    axes[1, 0].set_ylabel("validation probe mean answer depth", fontsize=8)
    _study_caption(fig, curves, "training dynamics")
    return _save_figure(fig, path)


def plot_main_job_complexity(study: dict, reports: dict[str, dict], train_sizes, path: str | Path, title: str = "") -> Path:
    """The main job's figure, the study's answer first: top, the study's models (`anira_study.study_report.study_answer`:
    seed 0, the shipped run, as the line, the band spanning every finished seed), or a plain note that the study is
    pending; below, the job's own short run with its 95 % intervals over test prompts."""
    import textwrap

    from .study import SHIPPED_SEED

    import matplotlib.pyplot as plt

    results = study["status"] == "results"
    fig = plt.figure(figsize=(11, 8.6 if results else 5.6))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1] if results else [1, 3])
    if results:
        top_acc, top_depth = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        curves = study["curves"]
        colors = _colors(curves["models"])
        for name, model in curves["models"].items():
            sizes = sorted(model["accuracy"])
            shipped = SHIPPED_SEED in model["seeds"]
            for ax, key in ((top_acc, "accuracy"), (top_depth, "depth")):
                bands = [model[key][c] for c in sizes]
                line = [b["seeds"].get(SHIPPED_SEED, np.nan) if shipped else b["mean"] for b in bands]
                ax.plot(sizes, line, color=colors[name], marker="o",
                        label=f"{name} seed {SHIPPED_SEED}" if shipped else f"{name} mean (seed {SHIPPED_SEED} pending)")
                ax.fill_between(sizes, [b["min"] for b in bands], [b["max"] for b in bands], color=colors[name], alpha=0.2,
                                linewidth=0)
        for ax in (top_acc, top_depth):
            _mark_sizes(ax, curves["train_sizes"])
            ax.legend(fontsize=7)
        top_acc.set_ylim(-0.02, 1.02)
        top_acc.set_ylabel("test accuracy (generated answer)")
        top_depth.set_ylabel("mean depth at answer-predicting positions")
        from .study_report import missing_note

        heading = (f"The study ({study['protocol']}): seed {SHIPPED_SEED} as the line, band: {curves['band']}; "
                   f"its own test prompts; {missing_note(curves)}")
    else:  # one panel across the row: the statement, and no number
        top_acc = fig.add_subplot(grid[0, :])
        top_acc.axis("off")
        top_acc.text(0.0, 0.5, textwrap.fill(study["text"], 120), transform=top_acc.transAxes, va="center", fontsize=10)
        heading = f"The study ({study['protocol']}): {study['status']}"
    top_acc.set_title(textwrap.fill(heading, 130), loc="left", fontsize=9)
    short_acc, short_depth = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    _complexity_panels(short_acc, short_depth, reports, train_sizes)
    short_acc.set_title("This job's short run (95 % intervals over test prompts)", loc="left", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)
