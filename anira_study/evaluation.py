"""Evaluation: what a trained model gets right, and how much compute it spends, per complexity.

- `answer_records`: one forward over a split; per row the teacher-forced correctness of every answer
  token and the depth spent at each position that predicts one (position `answer_start - 1 + k`).
- `generated_correct`: greedy `model.generate` of every answer, scored by the task's scorer (or the same
  prompts through depth-wise batched decoding, `depth_batching=True`: the same rows correct).
- `summarize_by_complexity`: per complexity the number of distinct prompts (`items`), accuracies and
  mean depth, each with a 95 % interval (`anira_study.statistics`); with `trained_symbols`, also the
  share of items whose answer needs a symbol that training never produced as a target, and the
  generated accuracy without them (an untrained output symbol caps accuracy whatever the reasoning);
  with `input_symbols`, the input side too: the items whose prompt holds a symbol that no training row
  holds anywhere (e.g. the `<hop=k>` marker of an unseen k: its embedding was never trained), and those symbols.
- `evaluation_report`: that summary for every test split, plus Spearman's rho between an item's mean
  answer depth and its complexity, with a bootstrap interval over items.

Evaluation reads the test splits; nothing in training does (the probe reads `validation`).
"""

import importlib
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from anira_tasks import TaskSpec, build_dataset_dict, score_answer, valid_next_tokens

from .data import AnswerCollator, unwrap_model
from .metrics import load_metric
from .statistics import format_correlation, pooled_mean, proportion

EVAL_SPLITS = ("test_seen", "test_interpolation", "test_extrapolation")
SPLIT_LABELS = {"test_seen": "seen", "test_interpolation": "interp.", "test_extrapolation": "unseen", "validation": "valid."}


def valid_answer_ids(row: dict, tokenizer) -> list[set[int]]:
    """Token ids accepted at each answer step under teacher forcing (a singleton unless BREVO)."""
    return [set(tokenizer.convert_tokens_to_ids(sorted(valid_next_tokens(row, k))))
            for k in range(row["answer_length"])]


@torch.no_grad()
def answer_records(model, rows: list[dict], tokenizer, batch_size: int = 64, max_depth: int | None = None) -> list[dict]:
    """Per row: `complexity`, `token_correct` (one bool per answer token, teacher forced, any valid next
    token counts), `depths` (iterations at the positions predicting the answer tokens), `answer_correct`
    (all answer tokens right), `compute_loss` and the row's depth sum and count over all real tokens."""
    model_was_training = model.training
    model.eval()
    device = next(unwrap_model(model).parameters()).device
    collator = AnswerCollator(tokenizer.pad_token_id)
    records = []
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collator(batch_rows).items()}
        kwargs = {} if max_depth is None else {"max_depth": max_depth}
        out = model(**batch, use_cache=False, **kwargs)
        predicted = out.logits.argmax(-1).cpu()
        depths = out.depths.cpu()
        for i, row in enumerate(batch_rows):
            first, length = row["answer_start"] - 1, row["answer_length"]
            valid = valid_answer_ids(row, tokenizer)
            token_correct = [int(predicted[i, first + k]) in valid[k] for k in range(length)]
            real = depths[i] >= 0
            records.append({
                "complexity": row["complexity"],
                "token_correct": token_correct,
                "answer_correct": all(token_correct),
                "depths": depths[i, first:first + length].tolist(),
                "all_depths_sum": float(depths[i][real].sum()), "all_depths_count": int(real.sum()),
                "compute_loss": float(out.compute_loss) if out.compute_loss is not None else float("nan"),
            })
    model.train(model_was_training)
    return records


def generation_batches(rows: list[dict], batch_size: int):
    """(prompt length, row indices, new tokens) of each `generate()` call: rows grouped by prompt length, so that
    no prompt needs padding, at most `batch_size` a call, as many new tokens as the call's longest answer."""
    by_length = defaultdict(list)
    for index, row in enumerate(rows):
        by_length[row["answer_start"]].append(index)
    for prompt_length, indices in sorted(by_length.items()):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            yield prompt_length, chunk, max(len(rows[i]["input_ids"]) - prompt_length for i in chunk)


@torch.no_grad()
def generated_correct(model, rows: list[dict], tokenizer, batch_size: int = 64, depth_batching: bool = False) -> list[bool]:
    """Greedy generation of every answer, scored with the task's scorer (valid orders count for BREVO).

    Rows are batched by prompt length, so no prompt needs padding. `depth_batching`: the same prompts, each with
    the same token budget, through the model's `DepthBatcher` instead (modeling_anira/depth_batching.py): all
    queued at once, `batch_size` rows, a row taking the next prompt as soon as its sequence ends. Greedy decoding
    gives every sequence the tokens `generate()` gives it, so the same rows are scored correct."""
    model_was_training = model.training
    model.eval()
    base = unwrap_model(model)
    device = next(base.parameters()).device
    options = dict(do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    generated = {}  # row index -> generated token ids
    if depth_batching:
        # The schedule (the tokens do not depend on it): halted tokens wait for three quarters of the rows before
        # their coda and next token run together, and one prefill forward takes up to four batches' prompts of one
        # length: fewer, fuller passes. benchmarks/inference/RESULTS.md has the timings.
        batcher = _depth_batcher(base, max_batch_size=batch_size, min_coda_rows=max(1, 3 * batch_size // 4),
                                 prefill_size=4 * batch_size, **options)
        order = {}
        for prompt_length, chunk, new_tokens in generation_batches(rows, batch_size):
            for i in chunk:
                order[batcher.add(rows[i]["input_ids"][:prompt_length], max_new_tokens=new_tokens)] = i
        for result in batcher.run():
            generated[order[result.request_id]] = result.generated.tolist()
    else:
        for prompt_length, chunk, new_tokens in generation_batches(rows, batch_size):
            prompts = torch.tensor([rows[i]["input_ids"][:prompt_length] for i in chunk], device=device)
            output = base.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                                   **options)
            generated.update(zip(chunk, output[:, prompt_length:].tolist()))
    correct = []
    for index, row in enumerate(rows):
        tokens = [t for t in tokenizer.convert_ids_to_tokens(generated[index]) if t != tokenizer.pad_token]
        correct.append(bool(score_answer(row, tokens)))
    model.train(model_was_training)
    return correct


def _depth_batcher(model, **options):
    """The model's own DepthBatcher: its package's, or the copy beside a Hub folder's remote code."""
    package = type(model).__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.depth_batching").DepthBatcher(model, **options)


def trained_target_symbols(train_rows, tokenizer) -> set[str]:
    """Every symbol that training supervised as a target (labels other than -100)."""
    ids = {label for labels in train_rows["labels"] for label in labels if label != -100}
    return set(tokenizer.convert_ids_to_tokens(sorted(ids)))


def trained_input_symbols(train_rows, tokenizer) -> set[str]:
    """Every symbol that occurs anywhere in a training row (prompt or answer): the inputs the model ever read."""
    ids = {token for input_ids in train_rows["input_ids"] for token in input_ids}
    return set(tokenizer.convert_ids_to_tokens(sorted(ids)))


def summarize_by_complexity(records: list[dict], generated: list[bool] | None = None,
                            answers: list[str] | None = None, trained_symbols: set[str] | None = None,
                            prompts: list[str] | None = None, input_symbols: set[str] | None = None) -> dict:
    """{"overall": ..., "per_complexity": {c: ...}}, each with

        items (distinct prompts), token_accuracy, answer_accuracy, mean_depth[, generated_accuracy]
        and `intervals` {name: [low, high]} (95 %: Wilson for items, item bootstrap for pooled tokens);
        with `generated`, `answers` and `trained_symbols`: untrained_answer_share, untrained_answer_items and
        generated_accuracy_trained_symbols (output side: an answer symbol never trained as a target);
        with `prompts` and `input_symbols`: untrained_prompt_share, untrained_prompt_items and
        untrained_prompt_symbols (input side: the prompt symbols that occur in no training row, sorted).
    """
    groups = defaultdict(list)
    for index, record in enumerate(records):
        groups[record["complexity"]].append(index)

    def summary(indices: list[int]) -> dict:
        stats = {
            "token_accuracy": pooled_mean([sum(records[i]["token_correct"]) for i in indices],
                                          [len(records[i]["token_correct"]) for i in indices]),
            "answer_accuracy": proportion(sum(records[i]["answer_correct"] for i in indices), len(indices)),
            "mean_depth": pooled_mean([sum(records[i]["depths"]) for i in indices], [len(records[i]["depths"]) for i in indices]),
        }
        if generated is not None:
            stats["generated_accuracy"] = proportion(sum(generated[i] for i in indices), len(indices))
        result = {"items": len(indices), "samples": len(indices)}
        if generated is not None and answers is not None and trained_symbols is not None:
            covered = [i for i in indices if set(answers[i].split()) <= trained_symbols]
            result["untrained_answer_share"] = 1 - len(covered) / len(indices) if indices else float("nan")
            result["untrained_answer_items"] = len(indices) - len(covered)
            stats["generated_accuracy_trained_symbols"] = proportion(sum(generated[i] for i in covered), len(covered))
        if prompts is not None and input_symbols is not None:
            unread = [set(prompts[i].split()) - input_symbols for i in indices]
            result["untrained_prompt_items"] = sum(1 for symbols in unread if symbols)
            result["untrained_prompt_share"] = result["untrained_prompt_items"] / len(indices) if indices else float("nan")
            result["untrained_prompt_symbols"] = sorted(set().union(*unread))
        result |= {name: stat["value"] for name, stat in stats.items()}
        result["intervals"] = {name: [stat["low"], stat["high"]] for name, stat in stats.items()}
        return result

    return {
        "overall": summary(list(range(len(records)))),
        "per_complexity": {int(c): summary(indices) for c, indices in sorted(groups.items())},
    }


def item_depths(records: list[dict]) -> tuple[list[float], list[int]]:
    """(mean answer depth, complexity) per item: the observations Spearman's rho is computed over."""
    pairs = [(sum(r["depths"]) / len(r["depths"]), r["complexity"]) for r in records if r["depths"]]
    return [d for d, _ in pairs], [c for _, c in pairs]


def evaluation_report(model, data, tokenizer, splits=EVAL_SPLITS, batch_size: int = 64, generate: bool = True,
                      keep_records: bool = False, resamples: int = 1000, depth_batching: bool = False) -> dict:
    """{split: {"overall", "per_complexity", "spearman", "spearman_interval", "items"}, "all": {...}} for one model.

    rho is over items (distinct prompts): an item's mean answer depth against its complexity, with a
    percentile bootstrap interval over items (the `depth_complexity_spearman` metric module). `depth_batching`:
    generated answers through depth-wise batched decoding (`generated_correct`)."""
    spearman = load_metric("depth_complexity_spearman")
    trained = trained_target_symbols(data["train"], tokenizer) if "train" in data else None
    read = trained_input_symbols(data["train"], tokenizer) if "train" in data else None
    report, all_depths, all_complexities = {}, [], []
    for split in splits:
        if split not in data:
            continue
        rows = data[split].to_list()
        records = answer_records(model, rows, tokenizer, batch_size)
        generated = generated_correct(model, rows, tokenizer, batch_size, depth_batching) if generate else None
        summary = summarize_by_complexity(records, generated, [row["answer"] for row in rows], trained,
                                          [row["prompt"] for row in rows], read)
        depths, complexities = item_depths(records)
        rho = spearman.compute(predictions=depths, references=complexities, resamples=resamples)
        report[split] = {**summary, "spearman": rho["spearman"], "spearman_interval": [rho["spearman_low"], rho["spearman_high"]],
                         "items": len(depths), "distinct_prompts": len({row["prompt"] for row in rows})}
        if keep_records:
            report[split]["records"] = [{**r, **{k: rows[i][k] for k in rows[i] if isinstance(rows[i][k], list) and k not in ("input_ids", "labels")}}
                                        for i, r in enumerate(records)]
        all_depths += depths
        all_complexities += complexities
    rho = spearman.compute(predictions=all_depths, references=all_complexities, resamples=resamples)
    report["all"] = {"spearman": rho["spearman"], "spearman_interval": [rho["spearman_low"], rho["spearman_high"]],
                     "items": len(all_depths)}
    return report


# ----------------------------------------------------------------------------- data of a trained folder
def folder_task_spec(model_dir: str | Path) -> TaskSpec | str:
    """The TaskSpec a folder's model was evaluated on: from its `anira_data.json` (saved by `examples/train.py`), or
    from its `recipe.json` (a `hub_configs/` folder: the `train.py` arguments of its last stage, the stage whose
    data `reproduce` evaluated). A string when the folder names a saved DatasetDict instead."""
    from transformers import HfArgumentParser

    from .arguments import DataArguments
    from .data import task_spec
    from .reproduce import load_recipe, stage_overrides

    folder = Path(model_dir)
    if (folder / "anira_data.json").exists():
        spec = json.loads((folder / "anira_data.json").read_text())
        return spec["dataset_path"] if "dataset_path" in spec else TaskSpec(**spec)
    if not (folder / "recipe.json").exists():
        raise ValueError(f"{folder} has neither anira_data.json nor recipe.json: pass --dataset_path")
    recipe = load_recipe(folder)
    argv = list(recipe["train_args"])
    last = stage_overrides(recipe)[-1]
    for flag, value in zip(last[::2], last[1::2]):
        argv = argv[:argv.index(flag) + 1] + [value] + argv[argv.index(flag) + 2:] if flag in argv else argv + [flag, value]
    (data_args, _) = HfArgumentParser(DataArguments).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    return task_spec(data_args)


def load_eval_data(model_dir: str | Path, dataset_path: str | None = None, num_validation: int | None = None):
    """(DatasetDict, training sizes) of a trained folder: the data its spec rebuilds (`folder_task_spec`: the
    `anira_data.json` examples/train.py saved, or a hub_configs folder's recipe.json), or the saved DatasetDict
    it names.

    num_validation: rebuild the validation split with this many prompts per size. They come from the same
    validation bucket of the prompt space, which no training row is drawn from, so a larger validation split
    stays disjoint from training; the other splits do not change (the test bucket is apart from it)."""
    import datasets

    if dataset_path is None:
        source = folder_task_spec(model_dir)
        if isinstance(source, TaskSpec):
            spec = replace(source, num_validation=num_validation) if num_validation else source
            return build_dataset_dict(spec), list(spec.train_sizes)
        dataset_path = source
    if num_validation:
        raise ValueError("num_validation rebuilds a generated split; a saved DatasetDict (dataset_path) has a fixed one")
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


# ----------------------------------------------------------------------------- the table
def _cell(values: dict, metric: str) -> str:
    value = values.get(metric, float("nan"))
    low, high = values.get("intervals", {}).get(metric, [float("nan")] * 2)
    if value != value:
        return "nan"
    return f"{value:.2f} [{low:.2f},{high:.2f}]" if low == low else f"{value:.2f}"


def format_table(reports: dict[str, dict], accuracy: str = "generated_accuracy") -> str:
    """A plain-text table: per (split, complexity) the distinct prompts n, then per model the accuracy
    (`accuracy`: generated by default, teacher-forced `token_accuracy` when not generated) and the mean
    answer depth, each with its 95 % interval; then rho(depth, c) per split over items, with its interval."""
    names = list(reports)
    first = reports[names[0]]
    some_split = next(s for s in EVAL_SPLITS if s in first)
    if accuracy not in first[some_split]["overall"]:
        accuracy = "token_accuracy"
    width = 36
    header = f"{'split':7} {'c':>3} {'n':>5}  " + "  ".join(f"{name:^{width}}" for name in names)
    sub = f"{'':7} {'':>3} {'':>5}  " + "  ".join(f"{'accuracy':^18}{'depth':^18}" for _ in names)
    lines = [header, sub, "-" * len(sub)]
    for split in EVAL_SPLITS:
        if split not in first:
            continue
        for c, values0 in first[split]["per_complexity"].items():
            cells = [f"{_cell(reports[name][split]['per_complexity'].get(c, {}), accuracy):^18}"
                     f"{_cell(reports[name][split]['per_complexity'].get(c, {}), 'mean_depth'):^18}" for name in names]
            lines.append(f"{SPLIT_LABELS[split]:7} {c:>3} {values0['items']:>5}  " + "  ".join(cells))
    lines.append("-" * len(sub))
    for split in [s for s in EVAL_SPLITS if s in first] + ["all"]:
        cells = []
        for name in names:
            entry = reports[name][split]
            rho = entry["spearman"]  # NaN when depth is constant (a fixed-depth model)
            text = "undefined" if rho != rho else "= " + format_correlation(rho, entry.get("spearman_interval"), separator=",")
            cells.append(f"{'rho(depth, c) ' + text:^{width}}")
        lines.append(f"{SPLIT_LABELS.get(split, split):7} {'':>3} {first[split]['items']:>5}  " + "  ".join(cells))
    return "\n".join(lines)
