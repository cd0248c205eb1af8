"""Intervals for every number the study reports: accuracies, mean depths, rank correlations.

Decisions:
- The unit of evidence is a distinct prompt (an *item*): evaluation splits hold distinct prompts only,
  and the tokens of one answer are not independent of each other. Proportions of items (answer
  accuracy) get Wilson score intervals; quantities pooled over tokens (token accuracy, mean depth) and
  correlations get percentile intervals from a bootstrap that resamples items, tokens together.
- Spearman's rho between depth and complexity is computed over items (an item's mean depth at the
  positions predicting its answer tokens against its complexity), so that a long answer does not
  count as many independent observations; the `depth_complexity_spearman` metric module computes it
  and its bootstrap interval (it must load by path with `evaluate`, so it carries its own code).
- Bootstraps are seeded (`seed`) and use `resamples` draws (1000 by default): a report is reproducible
  to the last digit.
- Several training runs (seeds) of one recipe are summarised by `seed_summary`: its interval is a t-interval
  over the seeds' values (n - 1 degrees of freedom), the variation between training runs, which the
  per-run intervals over test items above do not contain.
"""

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, count: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (NaNs for no trials). Unlike the normal
    approximation it stays inside [0, 1] and is sensible at 0 and at `count`."""
    if count == 0:
        return (math.nan, math.nan)
    p = successes / count
    denominator = 1 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(successes: int, count: int) -> dict:
    """{"value", "low", "high", "count"}: a proportion with its Wilson interval."""
    low, high = wilson_interval(successes, count)
    return {"value": successes / count if count else math.nan, "low": low, "high": high, "count": count}


def format_correlation(value: float, interval: Sequence[float] | None = None, separator: str = ", ") -> str:
    """A rank correlation as the reports print it: "0.82 [0.80, 0.84]", or "undefined (constant depth)" when
    it is NaN. Spearman's rho is NaN exactly when one side has no spread; in these reports that side is depth
    (complexity always varies across the sizes evaluated), e.g. a fixed-depth model, so the text says why."""
    if value != value:
        return "undefined (constant depth)"
    if interval is None or interval[0] != interval[0]:
        return f"{value:.2f}"
    return f"{value:.2f} [{interval[0]:.2f}{separator}{interval[1]:.2f}]"


def _bootstrap_indices(items: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, items, size=(resamples, items))


def pooled_mean(sums: Sequence[float], counts: Sequence[int], resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of values pooled over items (item i contributes `counts[i]` values summing to `sums[i]`),
    with a percentile interval from resampling items. {"value", "low", "high", "count" (items)}."""
    sums, counts = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    if counts.sum() == 0:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "count": int(len(sums))}
    value = float(sums.sum() / counts.sum())
    indices = _bootstrap_indices(len(sums), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = sums[indices].sum(1) / counts[indices].sum(1)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return {"value": value, "low": float(low), "high": float(high), "count": int(len(sums))}


def seed_summary(values: Sequence[float], target: float | None = None, at_most: bool = False,
                 confidence: float = 0.95) -> dict:
    """One number over training runs, one value per seed: {"mean", "sd", "min", "max", "seeds", "low", "high",
    "meeting_target", "target", "interval_over"}.

    `low`/`high` is a t-interval over seeds, mean +- t(1 - (1 - confidence) / 2, seeds - 1) * sd / sqrt(seeds)
    (sd with n - 1 in the denominator): the spread of the *training runs*, i.e. where the mean over seeds of
    another batch of runs would fall, not the uncertainty of one run's test items (that is a Wilson or
    bootstrap interval per run). It assumes seed values roughly normal; one seed gives no interval (NaN).
    `meeting_target` counts the seeds with value >= `target` (<= with `at_most`); None without a target."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"seed_summary needs a flat list of one value per seed, got shape {values.shape}")
    if not np.isfinite(values).all():
        bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
        raise ValueError(f"seed_summary: the values of seeds at positions {bad} are not finite ({values[bad].tolist()})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    seeds = len(values)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if seeds > 1 else math.nan
    half = float(t.ppf(1 - (1 - confidence) / 2, seeds - 1)) * sd / math.sqrt(seeds) if seeds > 1 else math.nan
    meeting = None
    if target is not None:
        meeting = int((values <= target).sum() if at_most else (values >= target).sum())
    return {"mean": mean, "sd": sd, "min": float(values.min()), "max": float(values.max()), "seeds": seeds,
            "low": mean - half, "high": mean + half, "meeting_target": meeting, "target": target,
            "interval_over": f"training runs: {confidence:.0%} t-interval over {seeds} seeds ({seeds - 1} degrees of freedom)"}
