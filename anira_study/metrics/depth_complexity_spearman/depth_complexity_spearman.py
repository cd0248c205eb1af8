"""Spearman rank correlation between allocated depth and task complexity, with mean depth per complexity."""

from collections import defaultdict

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata, spearmanr

_DESCRIPTION = """
Does the model spend more iterations where the task is harder? Spearman's rho between the depth a
recurrent model allocated (per token: the iterations at the position that predicts an answer token)
and the complexity of the sample the token belongs to, with its two-sided p-value and the mean
depth per complexity value, and a 95 % percentile bootstrap interval. Pass one observation per
independent item (e.g. a distinct prompt's mean answer depth): the p-value and the interval assume
independent observations. rho is NaN when either input is constant (e.g. a fixed-depth model).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): allocated depths (one per answer token, or per-sample means).
    references (`list[int]`): the complexity each depth belongs to.
    resamples (`int`, default 1000): bootstrap resamples of the items (0: no interval).
    seed (`int`, default 0): the bootstrap's seed.
Returns:
    spearman (`float`), spearman_low / spearman_high (`float`, the 95 % interval), p_value (`float`),
    count (`int`, observations), mean_depth_per_complexity (`dict[int, float]`).
Examples:
    >>> metric = evaluate.load("anira_study/metrics/depth_complexity_spearman/depth_complexity_spearman.py")
    >>> metric.compute(predictions=[2, 3, 5], references=[1, 2, 3])["spearman"]
    1.0
"""

_CITATION = """
@inproceedings{moosa2026anira,
  title={Understanding Dynamic Compute Allocation in Recurrent Transformers},
  author={Moosa, Ibraheem Muhammad and Lohit, Suhas and Wang, Ye and Chatterjee, Moitreya and Yin, Wenpeng},
  booktitle={ICML}, year={2026}, note={arXiv:2602.08864}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DepthComplexitySpearman(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("float64"),
                "references": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references, resamples: int = 1000, seed: int = 0):
        sums, counts = defaultdict(float), defaultdict(int)
        for depth, complexity in zip(predictions, references):
            sums[complexity] += depth
            counts[complexity] += 1
        constant = len(set(predictions)) < 2 or len(set(references)) < 2
        rho, p_value = (float("nan"), float("nan")) if constant else spearmanr(predictions, references)
        low = high = float("nan")
        if not constant and resamples > 0:
            x, y = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
            indices = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
            rx = np.apply_along_axis(rankdata, 1, x[indices])
            ry = np.apply_along_axis(rankdata, 1, y[indices])
            rx -= rx.mean(1, keepdims=True)
            ry -= ry.mean(1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                draws = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
            if np.isfinite(draws).any():
                low, high = (float(v) for v in np.nanpercentile(draws, [2.5, 97.5]))
        return {
            "spearman": float(rho),
            "spearman_low": low,
            "spearman_high": high,
            "p_value": float(p_value),
            "count": len(predictions),
            "mean_depth_per_complexity": {int(c): sums[c] / counts[c] for c in sorted(counts)},
        }
