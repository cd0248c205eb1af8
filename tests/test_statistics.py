"""anira_study.statistics, and the intervals of the metric modules: each statistic pinned to values computed
independently (scipy's own implementations, closed forms with quantiles from scipy.stats) and each bootstrap to
its coverage on simulated data whose true value is known (seeded, so the counts are exact)."""

import math

import numpy as np
import pytest
from scipy import stats

from anira_study.metrics import load_metric
from anira_study.statistics import pooled_mean, proportion, seed_summary, wilson_interval

CASES = [(0, 10), (1, 10), (5, 10), (10, 10), (81, 263), (37, 50), (1, 1000), (999, 1000)]


def wilson_closed_form(successes: int, count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's interval written with counts: (k + z^2/2) / (n + z^2) +- z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    centre = (successes + z * z / 2) / (count + z * z)
    half = z / (count + z * z) * math.sqrt(successes * (count - successes) / count + z * z / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("successes,count", CASES)
def test_wilson_interval_is_the_95_percent_score_interval_of_scipy_and_of_the_closed_form(successes, count):
    ours = wilson_interval(successes, count)
    scipy_ci = stats.binomtest(successes, count).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours == pytest.approx((scipy_ci.low, scipy_ci.high), abs=1e-12)
    assert ours == pytest.approx(wilson_closed_form(successes, count), abs=1e-12)
    assert (proportion(successes, count)["low"], proportion(successes, count)["high"]) == ours
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def spread_items(rng, items: int, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Items of 1-5 tokens; an item's tokens share an item effect (so items, not tokens, are independent)."""
    counts = rng.integers(1, 6, items)
    sums = np.array([rng.normal(mean + rng.normal(0, 0.5), 1.0, c).sum() for c in counts])
    return sums, counts


def test_pooled_mean_interval_is_scipys_percentile_bootstrap_over_items():
    sums, counts = spread_items(np.random.default_rng(1), 60, 2.0)
    ours = pooled_mean(sums, counts, resamples=4000, seed=0)
    scipy_ci = stats.bootstrap((sums, counts), lambda s, c, axis=-1: s.sum(axis) / c.sum(axis), paired=True,
                               vectorized=True, n_resamples=4000, method="percentile", confidence_level=0.95,
                               rng=np.random.default_rng(2)).confidence_interval
    width = scipy_ci.high - scipy_ci.low
    assert ours["value"] == pytest.approx(sums.sum() / counts.sum()) and ours["count"] == 60
    # independent draws: the endpoints agree up to Monte Carlo error (about 1 % of the width here);
    # a 50 % interval's endpoints would sit a third of the width inside
    assert abs(ours["low"] - scipy_ci.low) < 0.05 * width and abs(ours["high"] - scipy_ci.high) < 0.05 * width


def test_pooled_mean_interval_covers_the_true_mean_in_about_95_percent_of_simulated_studies():
    rng = np.random.default_rng(7)
    covered = 0
    for study in range(200):
        sums, counts = spread_items(rng, 40, 1.5)
        result = pooled_mean(sums, counts, resamples=500, seed=study)
        covered += result["low"] <= 1.5 <= result["high"]
    assert 0.90 <= covered / 200 <= 0.99, covered


def spearman_data(rng, n: int, r: float) -> tuple[list[float], list[int]]:
    """Bivariate normal with correlation r; the complexity side as integers (the metric's feature type) at a
    resolution of 1/1000, fine enough that ties do not move rho."""
    x, y = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n).T
    return x.tolist(), np.round(1000 * y).astype(int).tolist()


def test_spearman_metric_is_scipys_rho_and_its_interval_scipys_percentile_bootstrap():
    metric = load_metric("depth_complexity_spearman")
    rng = np.random.default_rng(3)
    complexity = rng.integers(1, 6, 80)
    depth = np.round(complexity + rng.normal(0, 1.5, 80))  # many ties on both sides
    result = metric.compute(predictions=depth.tolist(), references=complexity.tolist(), resamples=4000, seed=0)
    rho, p_value = stats.spearmanr(depth, complexity)
    assert result["spearman"] == pytest.approx(rho, abs=1e-12) and result["p_value"] == pytest.approx(p_value, rel=1e-9)

    def spearman(x, y, axis=-1):
        rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
        rx, ry = rx - rx.mean(axis, keepdims=True), ry - ry.mean(axis, keepdims=True)
        return (rx * ry).sum(axis) / np.sqrt((rx * rx).sum(axis) * (ry * ry).sum(axis))

    scipy_ci = stats.bootstrap((depth, complexity), spearman, paired=True, vectorized=True, n_resamples=4000,
                               method="percentile", confidence_level=0.95, rng=np.random.default_rng(4)).confidence_interval
    width = scipy_ci.high - scipy_ci.low
    assert abs(result["spearman_low"] - scipy_ci.low) < 0.05 * width
    assert abs(result["spearman_high"] - scipy_ci.high) < 0.05 * width


def test_spearman_interval_covers_the_population_rho_in_about_95_percent_of_simulated_studies():
    metric = load_metric("depth_complexity_spearman")
    r = 0.5
    truth = 6 / math.pi * math.asin(r / 2)  # Spearman's rho of a bivariate normal with Pearson r
    rng = np.random.default_rng(11)
    covered = 0
    for study in range(200):
        depth, complexity = spearman_data(rng, 60, r)
        result = metric.compute(predictions=depth, references=complexity, resamples=100, seed=study)
        covered += result["spearman_low"] <= truth <= result["spearman_high"]
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_complexity_accuracy_is_the_share_of_hits_per_complexity():
    rng = np.random.default_rng(5)
    predictions, references, complexities = rng.integers(0, 3, 300), rng.integers(0, 3, 300), rng.integers(1, 5, 300)
    result = load_metric("complexity_accuracy").compute(predictions=predictions.tolist(), references=references.tolist(),
                                                        complexities=complexities.tolist())
    hits = predictions == references
    assert result["accuracy"] == pytest.approx(hits.mean())
    for c in range(1, 5):
        assert result["accuracy_per_complexity"][c] == pytest.approx(hits[complexities == c].mean())
        assert result["count_per_complexity"][c] == int((complexities == c).sum())


def test_seed_summary_is_the_t_interval_over_seeds_with_n_minus_1_degrees_of_freedom():
    values = [0.91, 0.93, 0.88, 0.95, 0.90]
    summary = seed_summary(values, target=0.90)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    assert summary["mean"] == pytest.approx(mean) and summary["sd"] == pytest.approx(sd)
    assert (summary["min"], summary["max"], summary["seeds"]) == (0.88, 0.95, 5)
    low, high = stats.t.interval(0.95, df=4, loc=mean, scale=stats.sem(values))
    assert (summary["low"], summary["high"]) == pytest.approx((low, high), abs=1e-12)
    # the textbook table: t(0.975, 4 df) = 2.776
    assert summary["high"] - summary["mean"] == pytest.approx(2.776 * sd / math.sqrt(5), rel=1e-3)
    assert summary["meeting_target"] == 4 and seed_summary(values, target=0.90, at_most=True)["meeting_target"] == 2
    assert "training runs" in summary["interval_over"] and "4 degrees of freedom" in summary["interval_over"]
    assert seed_summary(values)["meeting_target"] is None


def test_seed_summary_interval_covers_the_mean_of_runs_in_95_percent_of_simulated_batches_of_seeds():
    rng = np.random.default_rng(9)
    batches = rng.normal(0.9, 0.02, size=(4000, 5))
    covered = sum(s["low"] <= 0.9 <= s["high"] for s in map(seed_summary, batches))
    assert 0.94 <= covered / 4000 <= 0.96, covered  # a normal quantile (1.96) instead of t's would give about 0.88


def test_seed_summary_refuses_no_seeds_and_non_finite_values_and_gives_one_seed_no_interval():
    with pytest.raises(ValueError, match="one value per seed"):
        seed_summary([])
    with pytest.raises(ValueError, match=r"positions \[1\] are not finite"):
        seed_summary([0.9, float("nan"), 0.8])
    one = seed_summary([0.9], target=0.8)
    assert one["mean"] == 0.9 and math.isnan(one["low"]) and math.isnan(one["high"]) and one["meeting_target"] == 1
