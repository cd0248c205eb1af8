"""Accuracy overall and per complexity value (the knob of a complexity-controlled task)."""

from collections import defaultdict

import datasets
import evaluate

_DESCRIPTION = """
Accuracy of predictions against references, overall and grouped by the complexity of the sample each
item belongs to (MANO's number of operators, BREVO's graph size, DEPO's hops, a CLRS input size).
For answers with several valid forms (BREVO's topological orders), score first and pass
`predictions = [1 if correct else 0]`, `references = [1] * n`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted token ids or class labels (or 0/1 correctness).
    references (`list[int]`): the targets.
    complexities (`list[int]`): the complexity of the sample each item comes from.
Returns:
    accuracy (`float`): over all items.
    accuracy_per_complexity (`dict[int, float]`), count_per_complexity (`dict[int, int]`).
Examples:
    >>> metric = evaluate.load("anira_study/metrics/complexity_accuracy/complexity_accuracy.py")
    >>> metric.compute(predictions=[1, 0, 1], references=[1, 1, 1], complexities=[1, 2, 2])["accuracy_per_complexity"]
    {1: 1.0, 2: 0.5}
"""

_CITATION = """
@inproceedings{moosa2026anira,
  title={Understanding Dynamic Compute Allocation in Recurrent Transformers},
  author={Moosa, Ibraheem Muhammad and Lohit, Suhas and Wang, Ye and Chatterjee, Moitreya and Yin, Wenpeng},
  booktitle={ICML}, year={2026}, note={arXiv:2602.08864}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ComplexityAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("int64"),
                "references": datasets.Value("int64"),
                "complexities": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references, complexities):
        hits, counts = defaultdict(int), defaultdict(int)
        for prediction, reference, complexity in zip(predictions, references, complexities):
            hits[complexity] += int(prediction == reference)
            counts[complexity] += 1
        total = sum(counts.values())
        return {
            "accuracy": sum(hits.values()) / total if total else float("nan"),
            "accuracy_per_complexity": {int(c): hits[c] / counts[c] for c in sorted(counts)},
            "count_per_complexity": {int(c): counts[c] for c in sorted(counts)},
        }
