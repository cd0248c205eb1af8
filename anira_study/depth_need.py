"""Needed versus allocated depth: how many iterations a prompt needs, and whether an adaptive model gives them.

The same weights run every token at exactly t iterations (a checkpoint of any mode loads as `depth_mode="fixed"`
and `generate(max_depth=t)`), t = 1..max_depth, on the model's own test prompts, greedy generation scored by the
task. From those runs:

- **uniform accuracy** per size and t;
- a prompt's **oracle depth**: the smallest uniform t that answers it right (None when no t does);
- an adaptive model's **allocated depth** against it: Spearman's rho over prompts, and the share of prompts given
  less than, exactly, or more than their oracle depth;
- **compute** in layer applications per answer token, `prelude + core * depth + coda` (the unit that stays right
  when a core has several layers; iterations alone would not count the prelude and coda every token pays);
- the **adaptive gain**: the compute of the cheapest uniform depth whose accuracy reaches the adaptive model's,
  divided by the adaptive model's own compute (above 1: adaptivity saves compute at matched accuracy);
- the **oracle gain**: the same ratio for the oracle allocation of these weights (each prompt at its oracle depth,
  a prompt no t answers at `min_depth`, since no depth helps it), which gives what per-prompt depth choice alone
  could save. Its accuracy (the share of prompts some t answers) is often above every uniform depth's, and then
  the gain is undefined; `oracle_gain_matched` is always defined: the oracle that answers exactly the prompts of
  the most accurate uniform depth t_b (each at its oracle depth, every other prompt at `min_depth`), against t_b.

Allocated depth is the **mean** number of iterations over the positions that predict the answer tokens (position
`answer_start - 1 + k` predicts answer token k), in the model's own greedy generation: the compute it spent on the
answer it is scored on, the quantity its gain divides by and the one `evaluation` reports as depth. (The maximum
would say whether any token got the oracle depth, but not what the prompt cost.) It is compared with the integer
oracle depth as it is, unrounded: 2.5 iterations against an oracle depth of 3 is less compute than the cheapest
uniform depth that answers the prompt. A prompt no t answers has no oracle depth: it is left out of rho and of the
less / exactly / more shares, and counted (`no_oracle`). Accuracies carry Wilson intervals; rho and the gains
percentile-bootstrap intervals over prompts (a draw where the gain is undefined is counted, not used).

Running the models (`generation_records`, `uniform_depth_records`) is apart from the pure functions over records
(`oracle_depth`, `depth_need_records`, `depth_need_summary`, `depth_need_report`, `format_depth_need`).
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anira_tasks import TaskSpec, build_dataset_dict, score_answer

from .data import unwrap_model
from .evaluation import folder_task_spec
from .metrics import load_metric
from .statistics import proportion

TEST_SPLITS = ("test_seen", "test_interpolation", "test_extrapolation")
ALLOCATION_CLASSES = ("less", "exactly", "more")


# ----------------------------------------------------------------------------- running a model
@torch.no_grad()
def generation_records(model, rows: list[dict], tokenizer, batch_size: int = 64, max_depth: int | None = None) -> list[dict]:
    """Per row: `correct` (greedy generated answer, the task's scorer) and `depths` (iterations run at the positions
    that predicted the answer tokens during that generation; a position after an early end of sequence ran nothing
    and is left out). `max_depth` is the depth budget of every forward (a fixed-mode model runs exactly it).

    Rows are batched by prompt length, so no prompt needs padding."""
    model_was_training = model.training
    model.eval()
    base = unwrap_model(model)
    device = next(base.parameters()).device
    by_length = defaultdict(list)
    for index, row in enumerate(rows):
        by_length[row["answer_start"]].append(index)
    records = [None] * len(rows)
    budget = {} if max_depth is None else {"max_depth": max_depth}
    for prompt_length, indices in sorted(by_length.items()):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            prompts = torch.tensor([rows[i]["input_ids"][:prompt_length] for i in chunk], device=device)
            new_tokens = max(len(rows[i]["input_ids"]) - prompt_length for i in chunk)
            output = base.generate(
                input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, return_dict_in_generate=True,
                **budget,
            )
            for j, row_index in enumerate(chunk):
                row = rows[row_index]
                tokens = [t for t in tokenizer.convert_ids_to_tokens(output.sequences[j, prompt_length:].tolist())
                          if t != tokenizer.pad_token]
                first = prompt_length - 1
                depths = [d for d in output.depths[j, first:first + row["answer_length"]].tolist() if d >= 0]
                records[row_index] = {"correct": bool(score_answer(row, tokens)), "depths": depths}
    model.train(model_was_training)
    return records


def uniform_depth_records(model, rows: list[dict], tokenizer, batch_size: int = 64,
                          depths: Sequence[int] | None = None) -> list[dict]:
    """Per row: `uniform_correct` (one bool per uniform depth t in `depths`, default min_depth..max_depth) and
    `uniform_ran` (per t, the distinct iteration counts the answer positions ran: [t], or the run is refused).

    The model must be in fixed mode (load any checkpoint with `depth_mode="fixed"`): an adaptive controller would
    choose its own depths below the budget."""
    config = unwrap_model(model).config
    if config.depth_mode != "fixed":
        raise ValueError(f"uniform depths need a fixed-mode model (load the checkpoint with depth_mode='fixed'), "
                         f"got depth_mode={config.depth_mode!r}")
    depths = list(range(config.min_depth, config.max_depth + 1)) if depths is None else list(depths)
    records = [{"uniform_correct": [], "uniform_ran": []} for _ in rows]
    for t in depths:
        for record, run in zip(records, generation_records(model, rows, tokenizer, batch_size, max_depth=t)):
            ran = sorted(set(run["depths"]))
            if ran != [t]:
                raise RuntimeError(f"the uniform run at depth {t} ran {ran} iterations at the answer positions")
            record["uniform_correct"].append(run["correct"])
            record["uniform_ran"].append(ran)
    return records


# ----------------------------------------------------------------------------- pure functions over records
def oracle_depth(uniform_correct: Sequence[bool], min_depth: int = 1) -> int | None:
    """The smallest uniform depth that answers the prompt (element i of `uniform_correct` is depth min_depth + i),
    None when none does."""
    return next((min_depth + i for i, correct in enumerate(uniform_correct) if correct), None)


def layer_applications(depth: float, layers: Sequence[int]) -> float:
    """Layer applications per token at `depth` iterations, `layers` = (prelude, core, coda) layer counts."""
    prelude, core, coda = layers
    return prelude + core * depth + coda


def depth_need_records(rows: list[dict], uniform: list[dict], adaptive: list[dict] | None = None,
                       min_depth: int = 1) -> list[dict]:
    """One record per prompt: `split`, `complexity`, `answer_tokens`, `uniform_correct`, `oracle_depth`, and with
    an adaptive model's `generation_records`: `adaptive_correct`, `allocated_depths` (per answer position) and
    `allocated_depth` (their mean)."""
    if len(uniform) != len(rows) or (adaptive is not None and len(adaptive) != len(rows)):
        raise ValueError(f"records do not match the rows: {len(rows)} rows, {len(uniform)} uniform records"
                         + ("" if adaptive is None else f", {len(adaptive)} adaptive records"))
    records = []
    for index, (row, u) in enumerate(zip(rows, uniform)):
        record = {"split": row.get("split"), "complexity": int(row["complexity"]), "answer_tokens": int(row["answer_length"]),
                  "uniform_correct": list(u["uniform_correct"]), "oracle_depth": oracle_depth(u["uniform_correct"], min_depth)}
        if adaptive is not None:
            a = adaptive[index]
            record |= {"adaptive_correct": a["correct"], "allocated_depths": list(a["depths"]),
                       "allocated_depth": sum(a["depths"]) / len(a["depths"]) if a["depths"] else math.nan}
        records.append(record)
    return records


def _percentile_interval(draws: np.ndarray) -> list[float]:
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return [math.nan, math.nan]
    low, high = np.percentile(finite, [2.5, 97.5])
    return [float(low), float(high)]


def _gain(uniform: np.ndarray, target: np.ndarray, depth_sums: np.ndarray, positions: np.ndarray, layers: Sequence[int],
          depths: np.ndarray, indices: np.ndarray) -> dict:
    """compute(cheapest uniform depth whose correct count reaches `target`'s) / compute(the allocation), at the point
    (indices row 0 is the identity) and over bootstrap draws (the other rows)."""
    counts = uniform[indices].sum(1)  # [draws, depths]
    goal = target[indices].sum(1)
    reached = counts >= goal[:, None]
    first = reached.argmax(1)
    own = layer_applications(depth_sums[indices].sum(1) / positions[indices].sum(1), layers)
    cost = np.where(reached.any(1), layer_applications(depths[first], layers), np.nan)
    ratio = cost / own
    point = ratio[0]
    return {"value": float(point), "interval": _percentile_interval(ratio[1:]) if np.isfinite(point) else [math.nan] * 2,
            "uniform_depth": int(depths[first[0]]) if reached[0].any() else None,
            "undefined_draws": int((~np.isfinite(ratio[1:])).sum()), "resamples": len(ratio) - 1}


def _matched_oracle_gain(uniform: np.ndarray, oracle: np.ndarray, positions: np.ndarray, layers: Sequence[int],
                         depths: np.ndarray, min_depth: int, indices: np.ndarray) -> dict:
    """compute(t_b) / compute(oracle answering t_b's prompts): t_b the most accurate uniform depth (the cheapest of
    ties); each prompt t_b answers at its oracle depth (<= t_b), every other prompt at min_depth."""
    drawn = uniform[indices]  # [draws, prompts, depths]
    best = drawn.sum(1).argmax(1)  # argmax takes the first maximum: the cheapest of ties
    solved = np.take_along_axis(drawn, best[:, None, None], 2)[..., 0]
    allocation = np.where(solved, oracle[indices], min_depth) * positions[indices]
    own = layer_applications(allocation.sum(1) / positions[indices].sum(1), layers)
    ratio = layer_applications(depths[best], layers) / own
    return {"value": float(ratio[0]), "interval": _percentile_interval(ratio[1:]), "uniform_depth": int(depths[best[0]]),
            "resamples": len(ratio) - 1}


def depth_need_summary(records: list[dict], layers: Sequence[int], min_depth: int = 1, resamples: int = 1000,
                       seed: int = 0) -> dict:
    """Uniform accuracies, the oracle, and (when the records carry an allocation) the adaptive model, for one group
    of prompts; see the module docstring for every definition. Plain numbers, counts and intervals."""
    if not records:
        raise ValueError("no records to summarize")
    n = len(records)
    num_depths = len(records[0]["uniform_correct"])
    depths = np.arange(min_depth, min_depth + num_depths)
    uniform = np.array([r["uniform_correct"] for r in records], dtype=bool)
    if uniform.shape != (n, num_depths):
        raise ValueError("every record needs the same uniform depths")
    positions = np.array([r["answer_tokens"] for r in records], dtype=float)
    oracle = np.array([r["oracle_depth"] if r["oracle_depth"] is not None else min_depth for r in records], dtype=float)
    solvable = np.array([r["oracle_depth"] is not None for r in records])
    indices = np.vstack([np.arange(n), np.random.default_rng(seed).integers(0, n, size=(resamples, n))])

    def accuracy(correct: int) -> dict:
        stat = proportion(int(correct), n)
        return {"correct": int(correct), "accuracy": stat["value"], "interval": [stat["low"], stat["high"]]}

    uniform_table = [{"depth": int(t), "compute": layer_applications(int(t), layers), **accuracy(uniform[:, i].sum())}
                     for i, t in enumerate(depths)]
    oracle_depths = [r["oracle_depth"] for r in records]
    oracle_mean = float((oracle * positions).sum() / positions.sum())
    summary = {
        "prompts": n,
        "uniform": uniform_table,
        "oracle": {
            **accuracy(solvable.sum()),
            "no_oracle": int((~solvable).sum()),
            "depth_counts": {str(int(t)): oracle_depths.count(int(t)) for t in depths} | {"none": int((~solvable).sum())},
            "mean_depth": oracle_mean, "compute": layer_applications(oracle_mean, layers),
            "gain": _gain(uniform, solvable, oracle * positions, positions, layers, depths, indices),
            "gain_matched": _matched_oracle_gain(uniform, oracle, positions, layers, depths, min_depth, indices),
        },
    }
    if "allocated_depths" not in records[0]:
        return summary
    correct = np.array([r["adaptive_correct"] for r in records], dtype=bool)
    depth_sums = np.array([sum(r["allocated_depths"]) for r in records], dtype=float)
    ran = np.array([len(r["allocated_depths"]) for r in records], dtype=float)
    mean_depth = float(depth_sums.sum() / ran.sum())
    summary["adaptive"] = {
        **accuracy(correct.sum()),
        "mean_depth": mean_depth, "compute": layer_applications(mean_depth, layers),
        **allocation_versus_oracle(records, resamples, seed),
        "gain": _gain(uniform, correct, depth_sums, ran, layers, depths, indices),
    }
    return summary


def allocation_versus_oracle(records: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    """rho(allocated depth, oracle depth) over the prompts that have an oracle depth, with its bootstrap interval
    (the estimator of rho(depth, c), the `depth_complexity_spearman` metric), and the share of them given less than,
    exactly, or more than their oracle depth (Wilson intervals)."""
    pairs = [(r["allocated_depth"], r["oracle_depth"]) for r in records
             if r["oracle_depth"] is not None and not math.isnan(r["allocated_depth"])]
    if len(pairs) >= 2:
        rho = load_metric("depth_complexity_spearman").compute(
            predictions=[a for a, _ in pairs], references=[o for _, o in pairs], resamples=resamples, seed=seed)
        value, interval = rho["spearman"], [rho["spearman_low"], rho["spearman_high"]]
    else:
        value, interval = math.nan, [math.nan, math.nan]
    classes = {"less": 0, "exactly": 0, "more": 0}
    for allocated, needed in pairs:
        classes["less" if allocated < needed - 1e-9 else "more" if allocated > needed + 1e-9 else "exactly"] += 1
    shares = {}
    for name, count in classes.items():
        stat = proportion(count, len(pairs))
        shares[name] = {"count": count, "share": stat["value"], "interval": [stat["low"], stat["high"]]}
    return {"rho": value, "rho_interval": interval, "rho_prompts": len(pairs), "allocation": shares}


def depth_need_report(records: list[dict], layers: Sequence[int], min_depth: int = 1, resamples: int = 1000,
                      seed: int = 0) -> dict:
    """{"overall", "per_split" {split: ...}, "per_complexity" {c: ...}} of `depth_need_summary`, plus the compute
    unit: JSON-serialisable (NaN where a quantity is undefined)."""
    by_split, by_size = defaultdict(list), defaultdict(list)
    for record in records:
        by_size[record["complexity"]].append(record)
        if record.get("split") is not None:
            by_split[record["split"]].append(record)

    def summarize(group: list[dict]) -> dict:
        return depth_need_summary(group, layers, min_depth, resamples, seed)

    return {
        "compute_unit": "layer applications per answer token: prelude + core * depth + coda",
        "layers": {"prelude": layers[0], "core": layers[1], "coda": layers[2]},
        "overall": summarize(records),
        "per_split": {split: summarize(group) for split, group in by_split.items()},
        "per_complexity": {str(c): summarize(group) for c, group in sorted(by_size.items())},
    }


def _interval(value: float, interval: Sequence[float]) -> str:
    if value != value:
        return "undefined"
    return f"{value:.2f}" if interval[0] != interval[0] else f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def format_depth_need(report: dict) -> str:
    """A markdown table: per group (all prompts, each split, each size) the prompts n, the accuracy at every uniform
    depth t, the oracle's accuracy and gains, and the adaptive model's accuracy, depth, rho(allocated, oracle),
    less / exactly / more shares and gain (when the report has an adaptive model)."""
    overall = report["overall"]
    depths = [entry["depth"] for entry in overall["uniform"]]
    adaptive = "adaptive" in overall
    header = ["prompts", "n", *[f"t={t}" for t in depths], "oracle", "oracle gain", "oracle gain (matched)"]
    if adaptive:
        header += ["adaptive", "depth", "rho(alloc, oracle)", "less / exactly / more", "adaptive gain"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = [("all", overall)] + list(report["per_split"].items()) + [(f"size {c}", s) for c, s in report["per_complexity"].items()]
    for label, summary in groups:
        oracle = summary["oracle"]
        cells = [label, str(summary["prompts"]), *[f"{entry['accuracy']:.2f}" for entry in summary["uniform"]],
                 f"{oracle['accuracy']:.2f}", _gain_cell(oracle["gain"]), _gain_cell(oracle["gain_matched"])]
        if adaptive:
            a = summary["adaptive"]
            shares = " / ".join(f"{a['allocation'][name]['share']:.2f}" for name in ALLOCATION_CLASSES)
            cells += [f"{a['accuracy']:.2f}", f"{a['mean_depth']:.2f}", _interval(a["rho"], a["rho_interval"]), shares,
                      _gain_cell(a["gain"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Accuracy: greedy generated answers. Compute: {report['compute_unit']}. A gain is compute(cheapest "
                 "uniform t reaching the accuracy) / own compute, t in parentheses; undefined when no t reaches it.")
    return "\n".join(lines)


def _gain_cell(gain: dict) -> str:
    if gain["uniform_depth"] is None:
        return "undefined"
    return f"{_interval(gain['value'], gain['interval'])} (t={gain['uniform_depth']})"


# ----------------------------------------------------------------------------- the test prompts of a model folder
def heldout_test_rows(model_dir: str | Path, dataset_path: str | None = None, sizes: Sequence[int] | None = None,
                     num_prompts: int | None = None) -> list[dict]:
    """The first `num_prompts` test prompts per size (of `sizes`, default all) of the model's test splits, each row
    with its `split`: the prompts its evaluation read, in the same order.

    A rebuilt spec is built with a one-row train split: the test splits do not depend on it (test prompts at
    training sizes come from the test bucket of the prompt hash, which no training row is drawn from, and the other
    test sizes are never trained), so they are the prompts of the full build, in less time."""
    import datasets

    source = dataset_path or folder_task_spec(model_dir)
    if isinstance(source, TaskSpec):
        data = build_dataset_dict(replace(source, num_train=1), num_proc=1)
    else:
        data = datasets.load_from_disk(source)
    available = sorted({c for split in TEST_SPLITS if split in data for c in data[split]["complexity"]})
    wanted = available if not sizes else list(sizes)
    missing = [size for size in wanted if size not in available]
    if missing:
        raise ValueError(f"--sizes {missing}: the model's test splits hold sizes {available}")
    rows, taken = [], defaultdict(int)
    for split in TEST_SPLITS:
        if split not in data:
            continue
        for row in data[split]:
            if row["complexity"] in wanted and (num_prompts is None or taken[row["complexity"]] < num_prompts):
                taken[row["complexity"]] += 1
                rows.append({**row, "split": split})
    return rows


def depth_need_for_folder(model_dir: str | Path, num_prompts: int | None = 100, sizes: Sequence[int] | None = None,
                          batch_size: int = 64, resamples: int = 1000, dataset_path: str | None = None,
                          device: str | None = None) -> dict:
    """The depth-need report of a trained folder on its own test prompts (the first `num_prompts` per size): its
    weights at every uniform depth, and its own allocation when it is adaptive, with the markdown table."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = heldout_test_rows(model_dir, dataset_path, sizes, num_prompts)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    own = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    uniform = uniform_depth_records(AutoModelForCausalLM.from_pretrained(model_dir, depth_mode="fixed").to(device),
                                    rows, tokenizer, batch_size)
    adaptive = None if own.config.depth_mode == "fixed" else generation_records(own, rows, tokenizer, batch_size)
    config = own.config
    records = depth_need_records(rows, uniform, adaptive, config.min_depth)
    layers = (config.num_prelude_layers, config.num_core_layers, config.num_coda_layers)
    report = {"model": str(model_dir), "depth_mode": config.depth_mode, "max_depth": config.max_depth,
              "num_prompts_per_size": num_prompts, "sizes": sorted({r["complexity"] for r in records}),
              **depth_need_report(records, layers, config.min_depth, resamples)}
    report["table"] = format_depth_need(report)
    return report
