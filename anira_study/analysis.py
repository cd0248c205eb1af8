"""What the compute follows: training phases from the probe log, and which features explain depth.

- `read_probe_log` / `read_probe_events`: a probe log's probe records / its event records (curriculum unlocks).
- `training_phases`: the learning phase (seen-size accuracy reaches 90 % of its final
  value) and what depth does before and after it, from the JSON lines `DepthProbeCallback` writes.
- `depth_feature_importance`: regress per-token depth on two groups of one-hot encoded features and split
  the explained variance between them (exact Shapley values of a two-player game, so the shares add up to
  the full model's R^2), with bootstrap intervals over items. `within_prompt=True` asks the same of the
  variation *inside* a prompt: each prompt's mean depth and mean features are removed first (prompt fixed
  effects), so graph size, constant within a prompt, explains nothing there, and what is left is whether
  depth moves from one answer token to the next with the token's node or with the algorithm's progress.

Feature groups (`FEATURE_GROUPS`), the question of the paper's finding 3:
- *static* features are properties of the input alone, fixed before any computation: graph size, a
  node's in/out degree, and a node's depth in the DAG (its longest path from a root: a property of the
  graph, not of where the algorithm is).
- *execution-state* features describe where the algorithm is when the token is predicted: the frontier
  size (how many nodes are valid next choices), how many nodes the previous emission newly enabled, and
  the DFS stack depth at that step.
"""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

FEATURE_GROUPS = {
    "brevo": {"static": ["num_nodes", "in_degree", "out_degree", "node_depth"],
              "execution_state": ["frontier_size", "newly_enabled"]},
    "topological_sort": {"static": ["size", "node_degree"],
                         "execution_state": ["dfs_depth", "kahn_frontier_size", "kahn_newly_enabled"]},
}


def _log_lines(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _final_lineage(records: list[dict]) -> list[dict]:
    """The records of the training that produced the final weights. A run resumed from a checkpoint appends again
    from the checkpoint's step, after records the interrupted process wrote past it: a probe record whose step is not
    above the last one's starts a new segment, and the records at or after its step before it (probes and events
    alike) belong to the abandoned one and are dropped."""
    kept, last_probe = [], None
    for record in records:
        if "event" not in record:
            if last_probe is not None and record["step"] <= last_probe:
                kept = [r for r in kept if r["step"] < record["step"]]
            last_probe = record["step"]
        kept.append(record)
    return kept


def read_probe_log(path: str | Path) -> list[dict]:
    """The probe records `DepthProbeCallback` wrote (event records, which carry an `event` field, are left out:
    `read_probe_events`), by step; of a resumed run, those of the segment it resumed from (`_final_lineage`)."""
    return sorted((r for r in _final_lineage(_log_lines(path)) if "event" not in r), key=lambda r: r["step"])


def read_probe_events(path: str | Path, event: str | None = None) -> list[dict]:
    """The event records of a probe log (e.g. `curriculum_unlock`: step, unlocked size, the values that unlocked
    it), of one kind when `event` is given, by step; of a resumed run, those of the final lineage only, so an unlock
    that the interrupted process logged and the resumed one did not is not reported."""
    return sorted((r for r in _final_lineage(_log_lines(path)) if "event" in r and event in (None, r["event"])),
                  key=lambda r: r["step"])


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


def token_table(report_records: list[dict], features: list[str], with_prompt: bool = False):
    """(X, depth) with one row per answer token whose features are all defined (>= 0; CLRS marks
    structure symbols with -1); with `with_prompt`, also each row's prompt (record) index."""
    rows, depths, prompts = [], [], []
    for index, record in enumerate(report_records):
        for k, depth in enumerate(record["depths"]):
            values = [record[name][k] for name in features]
            if min(values) >= 0 and depth >= 0:
                rows.append(values)
                depths.append(depth)
                prompts.append(index)
    X, y = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(features)), np.asarray(depths, dtype=float)
    return (X, y, np.asarray(prompts, dtype=np.int64)) if with_prompt else (X, y)


def _demean(values: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """`values` (rows x columns, or rows) minus the mean of their prompt's rows."""
    counts = np.bincount(prompt).astype(float)
    counts[counts == 0] = 1.0
    sums = np.zeros((len(counts),) + values.shape[1:])
    np.add.at(sums, prompt, values)
    return values - (sums / counts.reshape((-1,) + (1,) * (values.ndim - 1)))[prompt]


def _r2(X: np.ndarray, y: np.ndarray, columns: list[int], prompt: np.ndarray | None = None) -> float:
    """In-sample R^2 of a least-squares regression of y on the one-hot encoded (categorical) columns; with
    `prompt`, of the within-prompt parts of both (prompt fixed effects)."""
    if not columns or y.var() == 0:
        return 0.0
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import OneHotEncoder

    encoded = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit_transform(X[:, columns])
    if prompt is not None:
        encoded, y = _demean(encoded, prompt), _demean(y, prompt)
        if y.var() == 0:
            return 0.0
    return float(LinearRegression().fit(encoded, y).score(encoded, y))


def _shares(X: np.ndarray, y: np.ndarray, names: list[str], columns: dict[str, list[int]], full: float,
            prompt: np.ndarray | None = None) -> tuple[dict, dict]:
    alone = {name: _r2(X, y, columns[name], prompt) for name in names}
    if len(names) == 2:
        a, b = names
        return {a: (alone[a] + full - alone[b]) / 2, b: (alone[b] + full - alone[a]) / 2}, alone
    # more groups: leave-one-group-out contributions, rescaled to sum to the full R^2
    drop = {name: full - _r2(X, y, [c for other in names if other != name for c in columns[other]], prompt) for name in names}
    total = sum(drop.values()) or 1.0
    return {name: full * value / total for name, value in drop.items()}, alone


def depth_feature_importance(records: list[dict], groups: dict[str, list[str]], resamples: int = 200, seed: int = 0,
                             within_prompt: bool = False) -> dict:
    """Share of the variance of per-token depth explained by each feature group, with 95 % intervals.

    Two groups A, B: the full model explains R^2(A+B); each group's Shapley share is
    phi_A = (R^2(A) + R^2(A+B) - R^2(B)) / 2, so phi_A + phi_B = R^2(A+B). Also reported: each group alone
    and each feature alone (all one-hot encoded). `share_interval` comes from a percentile bootstrap that
    resamples items (records, i.e. distinct prompts, with all their tokens). NaN shares when depth is
    constant (nothing to explain). `within_prompt`: the variance left once each prompt's mean depth is
    removed, explained by the features with their prompt means removed (`depth_variance` is then that
    within-prompt variance).
    """
    names = list(groups)
    features = [f for name in names for f in groups[name]]
    index = {f: i for i, f in enumerate(features)}
    columns = {name: [index[f] for f in groups[name]] for name in names}
    every = list(range(len(features)))

    def table(sample):
        X, y, prompt = token_table(sample, features, with_prompt=True)
        return X, y, (prompt if within_prompt else None), (_demean(y, prompt) if within_prompt and len(y) else y)

    X, y, prompt, target = table(records)
    result = {"tokens": int(len(y)), "depth_variance": float(target.var()) if len(y) else float("nan"),
              "within_prompt": within_prompt}
    if len(y) < 2 or target.var() == 0:
        return result | {"r2_full": float("nan"), "share": {n: float("nan") for n in names}, "items": len(records),
                         "share_interval": {n: [float("nan")] * 2 for n in names},
                         "r2_alone": {n: float("nan") for n in names}, "r2_feature": {f: float("nan") for f in features}}
    full = _r2(X, y, every, prompt)
    share, alone = _shares(X, y, names, columns, full, prompt)
    draws = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        Xb, yb, prompt_b, target_b = table([records[i] for i in rng.integers(0, len(records), len(records))])
        if len(yb) < 2 or target_b.var() == 0:
            continue
        for name, value in _shares(Xb, yb, names, columns, _r2(Xb, yb, every, prompt_b), prompt_b)[0].items():
            draws[name].append(value)
    interval = {name: ([float(v) for v in np.percentile(values, [2.5, 97.5])] if values else [float("nan")] * 2)
                for name, values in draws.items()}
    return result | {"r2_full": full, "share": share, "share_interval": interval, "r2_alone": alone,
                     "r2_feature": {f: _r2(X, y, [index[f]], prompt) for f in features}, "items": len(records)}


def per_feature_mean_depth(records: list[dict], feature: str) -> dict[int, float]:
    sums, counts = defaultdict(float), defaultdict(int)
    for record in records:
        for k, depth in enumerate(record["depths"]):
            value = record[feature][k]
            if value >= 0:
                sums[value] += depth
                counts[value] += 1
    return {int(v): sums[v] / counts[v] for v in sorted(counts)}
