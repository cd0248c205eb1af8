"""The data side of training: building (or loading) the task's splits, batching rows, the probe set.

Decision: everything read *during* training (the probe that logs dynamics and gates the compute
penalty, the Trainer's `eval_dataset`, early stopping) comes from the `validation` split. The test
splits are read once, by the final evaluation (`anira_study.evaluation`).
"""

import json
import math
import os
from dataclasses import asdict, dataclass

import datasets
import torch

from anira_tasks import TaskSpec, build_dataset_dict

from .arguments import DataArguments, parse_size_weights

PROBE_SPLIT = "validation"


def unwrap_model(model):
    """The `PreTrainedModel` inside DDP / FSDP / compile wrappers (where `config` really lives)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


@dataclass
class AnswerCollator:
    """Right-pads `input_ids` with `pad_token_id` and `labels` with -100 (rows already carry -100 off the
    answer); every other column is dropped. `pad_to_multiple_of` helps tensor cores on GPUs."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        if self.pad_to_multiple_of:
            length = math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row.get("labels", row["input_ids"]))
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class PackedAnswerCollator:
    """Padding-free batches: the rows are packed into as few rows of `pack_length` tokens as first-fit
    decreasing gives (default: the batch's longest sample, so no sample is ever split), with `position_ids`
    restarting at 0 for each sample. The model confines attention to each sample where the position ids
    restart (`modeling_anira.modeling_anira.packed_sample_ids`, transformers' packed-sequence rule), so a packed
    batch gives the losses, gradients and depths of the padded one (tests/test_packing.py): the same samples
    per step, computed without most of the padding. On BREVO, whose samples vary in length, that halves the
    rows of every matmul.

    The unfilled tail of a packed row is padding (`attention_mask` 0, labels -100) whose position ids go on
    counting from the row's last sample, so it belongs to that sample as padding does to a padded row. The
    label of each sample's first token is set to -100: in a padded row it is never a target (the loss shifts
    it away), and in a packed row it would be the target of the previous sample's last token."""

    pad_token_id: int
    pack_length: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(row["input_ids"]) for row in rows]
        if min(lengths) == 0:
            raise ValueError("a row with no input_ids cannot be packed")
        capacity = max(lengths) if self.pack_length is None else self.pack_length
        if capacity < max(lengths):
            raise ValueError(f"pack_length {self.pack_length} is shorter than a sample of {max(lengths)} tokens")
        bins: list[list[int]] = []  # first-fit decreasing, ties in row order: deterministic
        room: list[int] = []
        for i in sorted(range(len(rows)), key=lambda i: -lengths[i]):
            for b, free in enumerate(room):
                if free >= lengths[i]:
                    bins[b].append(i)
                    room[b] -= lengths[i]
                    break
            else:
                bins.append([i])
                room.append(capacity - lengths[i])
        # each packed row as Python lists, made into tensors once (a tensor write per sample cost more than the packing)
        input_ids, labels, attention_mask, position_ids = [], [], [], []
        for members in bins:
            ids, targets, positions = [], [], []
            for i in members:
                sample = _as_list(rows[i]["input_ids"])
                ids += sample
                targets += [-100, *(_as_list(rows[i]["labels"]) if "labels" in rows[i] else sample)[1:]]
                positions += range(lengths[i])
            filled, last = len(ids), lengths[members[-1]]
            input_ids.append(ids + [self.pad_token_id] * (capacity - filled))
            labels.append(targets + [-100] * (capacity - filled))
            attention_mask.append([1] * filled + [0] * (capacity - filled))
            position_ids.append(positions + list(range(last, last + capacity - filled)))
        return {name: torch.tensor(value, dtype=torch.long) for name, value in (
            ("input_ids", input_ids), ("attention_mask", attention_mask), ("position_ids", position_ids), ("labels", labels))}


def _as_list(values) -> list[int]:
    """A row's token ids as a list of ints (a dataset row's list as is; a tensor's or array's converted)."""
    return values if isinstance(values, list) else torch.as_tensor(values).tolist()


def make_collator(pad_token_id: int, padding_free: bool):
    """The training collator: packed rows (`--padding_free true`, the default) or right-padded ones."""
    return PackedAnswerCollator(pad_token_id) if padding_free else AnswerCollator(pad_token_id)


def task_spec(data_args: DataArguments) -> TaskSpec:
    return TaskSpec(
        task=data_args.task, train_sizes=data_args.train_sizes, interpolation_sizes=data_args.interpolation_sizes,
        extrapolation_sizes=data_args.extrapolation_sizes, num_train=data_args.num_train,
        num_validation=data_args.num_validation, num_test_per_size=data_args.num_test_per_size,
        seed=data_args.task_seed, task_params=json.loads(data_args.task_params),
        train_size_weights=parse_size_weights(data_args.train_size_weights, data_args.train_sizes),
    )


def load_data(data_args: DataArguments) -> tuple[datasets.DatasetDict, dict]:
    """(DatasetDict, spec): built from the task arguments, or read from `dataset_path`."""
    if data_args.dataset_path:
        data = datasets.load_from_disk(data_args.dataset_path)
        spec = {"dataset_path": os.path.abspath(data_args.dataset_path), "task": data["train"][0]["task"],
                "train_sizes": sorted(set(data["train"]["complexity"]))}
        return data, spec
    spec = task_spec(data_args)
    return build_dataset_dict(spec, num_proc=data_args.num_proc), asdict(spec)


def probe_rows(data: datasets.DatasetDict, per_size: int) -> list[dict]:
    """Up to `per_size` rows per complexity of the validation split: the only split training reads."""
    if PROBE_SPLIT not in data:
        raise ValueError(f"the data has no {PROBE_SPLIT!r} split to probe (splits: {list(data)})")
    rows, counts = [], {}
    for row in data[PROBE_SPLIT]:
        if counts.get(row["complexity"], 0) < per_size:
            counts[row["complexity"]] = counts.get(row["complexity"], 0) + 1
            rows.append(row)
    return rows
