"""`evaluate` metric modules shipped with the package, loaded by path (no network):

    >>> from anira_study.metrics import load_metric
    >>> load_metric("depth_complexity_spearman").compute(predictions=[1, 2, 3], references=[1, 2, 3])["spearman"]
    1.0
"""

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("complexity_accuracy", "depth_complexity_spearman")


def metric_path(name: str) -> str:
    if name not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {METRIC_NAMES}, got {name!r}")
    return str(METRICS_DIR / name / f"{name}.py")


def load_metric(name: str):
    """`evaluate.load` on the module file inside the package: works offline (HF_HUB_OFFLINE=1)."""
    import evaluate

    return evaluate.load(metric_path(name))
