"""Training and evaluation helpers shared by `examples/train.py`, `examples/evaluate.py` and the tests.

- `AnswerCollator`: pads a batch (right padding), labels -100 everywhere but on the answer.
- `answer_records`: one forward over a split; per row the teacher-forced correctness of every answer
  token and the depth spent at each position that predicts one (position `answer_start - 1 + k`).
- `generated_correct`: greedy `model.generate` of every answer, scored by the task's scorer.
- `DepthProbeCallback`: every `probe_steps` steps, mean depth, compute loss and per-complexity accuracy
  and depth on a small probe set, logged through `Trainer.log` (so every reporter the Trainer has sees
  them) and appended to a JSON-lines file.
- `ComputePenaltyCallback`: the compute-penalty schedule (zero during a warm-up in steps, optionally
  until probe accuracy reaches a gate, then a linear ramp to the target); DESIGN.md explains why.

Everything is device- and process-agnostic: the Trainer places the model and shards the data, the probe
runs on every rank (so a gate opens at the same step everywhere: weights are equal under DDP and FSDP
needs every rank in the forward anyway), and only the world-process-zero writes files.
"""

import json
import math
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import torch
import torch.distributed as dist
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback,
                          set_seed)
from transformers.trainer_callback import ProgressCallback

from .dataset import TaskSpec, build_dataset_dict
from .registry import TASKS, score_answer, valid_next_tokens
from tokenization import load_tokenizer

PROBE_PREFIX = "probe"


def unwrap_model(model):
    """The `PreTrainedModel` inside DDP / FSDP / compile wrappers (where `config` really lives)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


# ----------------------------------------------------------------------------- data
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


def valid_answer_ids(row: dict, tokenizer) -> list[set[int]]:
    """Token ids accepted at each answer step under teacher forcing (a singleton unless BREVO)."""
    return [set(tokenizer.convert_tokens_to_ids(sorted(valid_next_tokens(row, k))))
            for k in range(row["answer_length"])]


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def answer_records(model, rows: list[dict], tokenizer, batch_size: int = 64, max_depth: int | None = None) -> list[dict]:
    """Per row: `complexity`, `token_correct` (one bool per answer token, teacher forced, any valid next
    token counts), `depths` (iterations at the positions predicting the answer tokens), `answer_correct`
    (all answer tokens right), `compute_loss` and the split-level mean depth over all real tokens."""
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


@torch.no_grad()
def generated_correct(model, rows: list[dict], tokenizer, batch_size: int = 64) -> list[bool]:
    """Greedy generation of every answer, scored with the task's scorer (valid orders count for BREVO).

    Rows are batched by prompt length, so no prompt needs padding."""
    model_was_training = model.training
    model.eval()
    base = unwrap_model(model)
    device = next(base.parameters()).device
    by_length = defaultdict(list)
    for index, row in enumerate(rows):
        by_length[row["answer_start"]].append(index)
    correct = [False] * len(rows)
    for prompt_length, indices in sorted(by_length.items()):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            prompts = torch.tensor([rows[i]["input_ids"][:prompt_length] for i in chunk], device=device)
            new_tokens = max(len(rows[i]["input_ids"]) - prompt_length for i in chunk)
            output = base.generate(
                input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            for row_index, generated in zip(chunk, output[:, prompt_length:].tolist()):
                tokens = tokenizer.convert_ids_to_tokens(generated)
                tokens = [t for t in tokens if t != tokenizer.pad_token]
                correct[row_index] = bool(score_answer(rows[row_index], tokens))
    model.train(model_was_training)
    return correct


def summarize_by_complexity(records: list[dict], generated: list[bool] | None = None) -> dict:
    """Per complexity: samples, token accuracy, answer accuracy (teacher forced), generated accuracy and
    mean depth at answer-predicting positions; plus the same over the whole split."""
    groups = defaultdict(list)
    for index, record in enumerate(records):
        groups[record["complexity"]].append(index)

    def summary(indices: list[int]) -> dict:
        tokens = [c for i in indices for c in records[i]["token_correct"]]
        depths = [d for i in indices for d in records[i]["depths"]]
        result = {
            "samples": len(indices),
            "token_accuracy": sum(tokens) / max(len(tokens), 1),
            "answer_accuracy": sum(records[i]["answer_correct"] for i in indices) / max(len(indices), 1),
            "mean_depth": sum(depths) / max(len(depths), 1),
        }
        if generated is not None:
            result["generated_accuracy"] = sum(generated[i] for i in indices) / max(len(indices), 1)
        return result

    return {
        "overall": summary(list(range(len(records)))),
        "per_complexity": {int(c): summary(indices) for c, indices in sorted(groups.items())},
    }


# ----------------------------------------------------------------------------- callbacks
class DepthProbeCallback(TrainerCallback):
    """Every `probe_steps` optimizer steps (and at the end), evaluate a small probe set and log

        probe/mean_depth (all real tokens), probe/answer_depth (positions predicting answer tokens),
        probe/compute_loss, probe/compute_penalty, probe/token_accuracy (answer tokens of training sizes),
        probe/depth_spearman (rho of answer depth and complexity; absent while depth is constant),
        probe/accuracy@<c>, probe/depth@<c>   (c = complexity; teacher-forced token accuracy, answer depth)

    through `trainer.log` (pass `trainer` or call `attach`): the values land in `state.log_history`
    and in every reporter (TensorBoard, W&B, ...). The world-process-zero also appends each record
    to `log_path` (JSON lines) for `examples/analyze.py`.
    """

    def __init__(self, probe_rows: list[dict], tokenizer, probe_steps: int = 50, log_path: str | None = None,
                 batch_size: int = 128, trainer=None, seen_sizes=None):
        self.probe_rows = list(probe_rows)
        self.seen_sizes = set(seen_sizes) if seen_sizes is not None else {row["complexity"] for row in self.probe_rows}
        self.tokenizer = tokenizer
        self.probe_steps = probe_steps
        self.log_path = log_path
        self.batch_size = batch_size
        self.trainer = trainer
        self.latest: dict = {}
        self.last_step: int | None = None

    def attach(self, trainer) -> "DepthProbeCallback":
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def probe(self, model) -> dict:
        records = answer_records(model, self.probe_rows, self.tokenizer, self.batch_size)
        summary = summarize_by_complexity(records)
        real_sum = sum(r["all_depths_sum"] for r in records)
        real_count = sum(r["all_depths_count"] for r in records)
        batches = range(0, len(records), self.batch_size)
        metrics = {
            f"{PROBE_PREFIX}/mean_depth": real_sum / max(real_count, 1),
            f"{PROBE_PREFIX}/answer_depth": summary["overall"]["mean_depth"],
            f"{PROBE_PREFIX}/compute_loss": sum(records[b]["compute_loss"] for b in batches) / len(batches),
            f"{PROBE_PREFIX}/compute_penalty": float(unwrap_model(model).config.compute_penalty),
        }
        seen = [c for r in records if r["complexity"] in self.seen_sizes for c in r["token_correct"]]
        metrics[f"{PROBE_PREFIX}/token_accuracy"] = sum(seen) / max(len(seen), 1)
        depths = [d for r in records for d in r["depths"]]
        complexities = [r["complexity"] for r in records for _ in r["depths"]]
        if len(set(depths)) > 1 and len(set(complexities)) > 1:
            from scipy.stats import spearmanr

            metrics[f"{PROBE_PREFIX}/depth_spearman"] = float(spearmanr(depths, complexities)[0])
        for c, values in summary["per_complexity"].items():
            metrics[f"{PROBE_PREFIX}/accuracy@{c}"] = values["token_accuracy"]
            metrics[f"{PROBE_PREFIX}/depth@{c}"] = values["mean_depth"]
        return metrics

    def _run(self, args, state, control, model) -> None:
        metrics = self.probe(model)
        self.latest, self.last_step = metrics, state.global_step
        if self.trainer is not None:
            should_log = control.should_log  # the handler's on_log clears it: keep the Trainer's own loss log
            self.trainer.log(dict(metrics))
            control.should_log = should_log
        if self.log_path and state.is_world_process_zero:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **metrics}) + "\n")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.probe_steps > 0 and state.global_step % self.probe_steps == 0:
            self._run(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.last_step != state.global_step:
            self._run(args, state, control, model)


class ComputePenaltyCallback(TrainerCallback):
    """Schedules `config.compute_penalty`: 0 for `warmup_steps`, and (when `gate_accuracy` is set) until the
    probe's token accuracy reaches it; then a linear ramp to `target` over `ramp_steps`.

    The step at which the gate opened is logged (`penalty/ramp_start`) and read back from the log
    history when training resumes from a checkpoint, so a resumed run follows the same schedule.
    """

    def __init__(self, target: float, warmup_steps: int = 0, ramp_steps: int = 0,
                 gate_accuracy: float | None = None, probe: DepthProbeCallback | None = None):
        if gate_accuracy is not None and probe is None:
            raise ValueError("gate_accuracy needs the DepthProbeCallback whose accuracy it reads")
        self.target = target
        self.warmup_steps = warmup_steps
        self.ramp_steps = ramp_steps
        self.gate_accuracy = gate_accuracy
        self.probe = probe
        self.ramp_start: int | None = None

    def penalty_at(self, step: int) -> float:
        if self.ramp_start is None or step < self.ramp_start:
            return 0.0
        if self.ramp_steps <= 0:
            return self.target
        return self.target * min(1.0, (step - self.ramp_start) / self.ramp_steps)

    def _gate_open(self) -> bool:
        if self.gate_accuracy is None:
            return True
        accuracy = self.probe.latest.get(f"{PROBE_PREFIX}/token_accuracy")
        return accuracy is not None and accuracy >= self.gate_accuracy

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        for entry in state.log_history:  # resumed run: the ramp started where the log says
            if "penalty/ramp_start" in entry:
                self.ramp_start = int(entry["penalty/ramp_start"])
                break
        unwrap_model(model).config.compute_penalty = self.penalty_at(state.global_step)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.ramp_start is None and state.global_step >= self.warmup_steps and self._gate_open():
            self.ramp_start = state.global_step
            if self.probe is not None and self.probe.trainer is not None:
                should_log = control.should_log
                self.probe.trainer.log({"penalty/ramp_start": float(self.ramp_start)})
                control.should_log = should_log
        unwrap_model(model).config.compute_penalty = self.penalty_at(state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # The saved config carries the scheduled target: the weight a further run would train with.
        unwrap_model(model).config.compute_penalty = self.target


class CompactProgressCallback(ProgressCallback):
    """The Trainer's progress bar, with the loss and probe summary in the bar instead of printed dicts."""

    SHOWN = ("loss", f"{PROBE_PREFIX}/token_accuracy", f"{PROBE_PREFIX}/mean_depth", f"{PROBE_PREFIX}/compute_penalty")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.postfix = getattr(self, "postfix", {})
            for key in self.SHOWN:
                if key in logs:
                    self.postfix[key.split("/")[-1]] = f"{logs[key]:.3g}"
            self.training_bar.set_postfix(self.postfix, refresh=False)


def use_compact_progress(trainer) -> None:
    """Swap the Trainer's printing progress callback for `CompactProgressCallback`."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgressCallback())


# ----------------------------------------------------------------------------- model cards
DEPTH_MODE_TITLES = {
    "early": "ANIRA-E (early decision: a router picks each token's depth once, from the prelude's shallow representation)",
    "online": "ANIRA-O (online decision: after every iteration each active token decides to halt or go on)",
    "fixed": "fixed-depth recurrent baseline (every token runs max_depth iterations)",
}


def model_card(name: str, config, task: str, knob: str, model_name_or_path: str, train_args: str,
               base_model: str | None = None, results_table: str | None = None) -> str:
    """A model card (YAML metadata; task, knob, sizes; how to train and evaluate) for `hub_configs/`
    folders and for the folders `examples/train.py` saves."""
    metadata = ["---", "library_name: transformers", "license: apache-2.0", "pipeline_tag: text-generation", "tags:",
                "- anira", "- recurrent-transformer", "- adaptive-computation", f"- depth-mode-{config.depth_mode}",
                f"- task-{task}"]
    if base_model:
        metadata.append(f"base_model: {base_model}")
    lines = metadata + [
        "---",
        "",
        f"# {name}",
        "",
        f"{DEPTH_MODE_TITLES[config.depth_mode]}, on the complexity-controlled task `{task}` (knob: {knob}), from",
        '"Understanding Dynamic Compute Allocation in Recurrent Transformers" (Moosa et al., ICML 2026, arXiv 2602.08864).',
        "",
        "| field | value |",
        "|---|---|",
        f"| depth_mode | `{config.depth_mode}` |",
        f"| task | `{task}` (knob: {knob}) |",
        f"| layers | prelude {config.num_prelude_layers}, core {config.num_core_layers} (weight-tied, up to "
        f"max_depth = {config.max_depth} iterations), coda {config.num_coda_layers} |",
        f"| hidden_size | {config.hidden_size} (heads {config.num_attention_heads}, MLP {config.intermediate_size}) |",
        f"| vocab_size | {config.vocab_size} (word-level tokenizer of the task family) |",
        f"| compute_penalty | {config.compute_penalty} (weight of expected depth / max_depth in the loss) |",
        "",
        "## Train and evaluate",
        "",
        "```bash",
        f"python examples/train.py --model_name_or_path {model_name_or_path} {train_args} \\",
        f"    --output_dir outputs/{name} --max_steps 20000 --per_device_train_batch_size 128 --learning_rate 1e-3 \\",
        "    --compute_penalty 0.01 --penalty_warmup_steps 2000 --penalty_ramp_steps 2000",
        f"python examples/evaluate.py --models outputs/{name} --output_dir outputs/{name}/eval",
        "```",
        "",
        "Load with `AutoConfig.from_pretrained` / `AutoModelForCausalLM.from_pretrained` after `import modeling_anira`;",
        "a trained folder saved by `examples/train.py` also loads with `trust_remote_code=True` (it carries the modeling files).",
    ]
    if results_table:
        lines += ["", "## Results", "", results_table]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the training script
DATA_SPEC_FILE = "anira_data.json"
PROBE_LOG_FILE = "probe_log.jsonl"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="hub_configs/anira-o-clrs",
        metadata={"help": "A hub_configs/ folder (config only: trained from scratch) or a trained folder (fine-tuned)."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated config overrides, e.g. 'hidden_size=64,max_depth=4,depth_mode=early'."},
    )


@dataclass
class DataArguments:
    task: str = field(default="minimum", metadata={"help": f"One of {sorted(TASKS)}."})
    train_sizes: list[int] = field(default_factory=lambda: [2, 3, 4], metadata={"help": "Complexities trained on."})
    interpolation_sizes: list[int] = field(default_factory=list, metadata={"help": "Held-out complexities inside the training range."})
    extrapolation_sizes: list[int] = field(default_factory=lambda: [5, 6], metadata={"help": "Complexities above the training range."})
    num_train: int = field(default=20_000)
    num_validation: int = field(default=256)
    num_test_per_size: int = field(default=200)
    task_seed: int = field(default=0, metadata={"help": "Seed of the task data (independent of --seed, the training seed)."})
    task_params: str = field(default="{}", metadata={"help": "JSON task parameters, e.g. '{\"max_key\": 7}' (minimum), '{\"num_nodes\": 5}' (depo)."})
    dataset_path: str | None = field(default=None, metadata={"help": "A DatasetDict saved with save_to_disk (replaces the task arguments)."})


@dataclass
class ScheduleArguments:
    compute_penalty: float | None = field(default=None, metadata={"help": "Target weight of the compute loss (default: the config's)."})
    penalty_warmup_steps: int = field(default=0, metadata={"help": "Steps with compute_penalty = 0 before the ramp can start."})
    penalty_ramp_steps: int = field(default=0, metadata={"help": "Steps of the linear ramp from 0 to the target."})
    penalty_gate_accuracy: float | None = field(
        default=None, metadata={"help": "Also wait until the probe's accuracy on training sizes reaches this."})
    probe_steps: int = field(default=50, metadata={"help": "Probe every this many steps (0: only at the end)."})
    probe_per_size: int = field(default=32, metadata={"help": "Probe samples per complexity value (seen and unseen sizes)."})
    max_train_minutes: float | None = field(default=None, metadata={"help": "Stop training after this wall time (all ranks agree)."})
    compact_progress: bool = field(default=False, metadata={"help": "Show probe metrics in the progress bar instead of printing logs."})


class TimeBudgetCallback(TrainerCallback):
    """Stops training once `minutes` of wall time have passed; ranks agree through an all-reduce."""

    def __init__(self, minutes: float):
        self.seconds = 60.0 * minutes
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = torch.tensor([float(time.monotonic() - self.start > self.seconds)], device=args.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(over, op=dist.ReduceOp.MAX)
        if over.item() > 0:
            control.should_training_stop = True


def load_data(data_args: DataArguments, seed: int, tokenizer) -> tuple[datasets.DatasetDict, dict]:
    if data_args.dataset_path:
        data = datasets.load_from_disk(data_args.dataset_path)
        spec = {"dataset_path": os.path.abspath(data_args.dataset_path), "task": data["train"][0]["task"],
                "train_sizes": sorted(set(data["train"]["complexity"]))}
        return data, spec
    spec = TaskSpec(
        task=data_args.task, train_sizes=data_args.train_sizes, interpolation_sizes=data_args.interpolation_sizes,
        extrapolation_sizes=data_args.extrapolation_sizes, num_train=data_args.num_train,
        num_validation=data_args.num_validation, num_test_per_size=data_args.num_test_per_size,
        seed=seed, task_params=json.loads(data_args.task_params),
    )
    return build_dataset_dict(spec, tokenizer), asdict(spec)


def probe_rows(data: datasets.DatasetDict, per_size: int) -> list[dict]:
    """Up to `per_size` rows per complexity from every test split (seen and unseen sizes)."""
    rows, counts = [], {}
    for split in ("test_seen", "test_interpolation", "test_extrapolation"):
        if split not in data:
            continue
        for row in data[split]:
            if counts.get(row["complexity"], 0) < per_size:
                counts[row["complexity"]] = counts.get(row["complexity"], 0) + 1
                rows.append(row)
    return rows


def load_model_and_tokenizer(model_args: ModelArguments, task: str):
    path = Path(model_args.model_name_or_path)
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
        config.validate()
    has_tokenizer = (path / "tokenizer.json").exists() or not path.exists()
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path) if has_tokenizer else load_tokenizer(task)
    has_weights = path.exists() and any(path.glob("*.safetensors"))
    if has_weights:
        model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, config=config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    if config.vocab_size != len(tokenizer):
        raise ValueError(f"config.vocab_size = {config.vocab_size} but the tokenizer has {len(tokenizer)} symbols: "
                         f"use the hub_configs/ folder of the task family of {task!r}")
    model.generation_config.update(do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return model, tokenizer


def build_trainer(model_args, data_args, schedule_args, training_args):
    """The Trainer of `examples/train.py` with its callbacks, plus (data, data spec, tokenizer)."""
    set_seed(training_args.seed)
    model, tokenizer = load_model_and_tokenizer(model_args, data_args.task)
    data, data_spec = load_data(data_args, data_args.task_seed, tokenizer)
    if schedule_args.compute_penalty is not None:
        model.config.compute_penalty = schedule_args.compute_penalty
    target_penalty = model.config.compute_penalty
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"].select_columns(["input_ids", "labels"]),
        eval_dataset=data["validation"].select_columns(["input_ids", "labels"]),
        data_collator=AnswerCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    probe = DepthProbeCallback(probe_rows(data, schedule_args.probe_per_size), tokenizer, schedule_args.probe_steps,
                               log_path=os.path.join(training_args.output_dir, PROBE_LOG_FILE),
                               seen_sizes=data_spec["train_sizes"]).attach(trainer)
    trainer.add_callback(ComputePenaltyCallback(
        target_penalty, schedule_args.penalty_warmup_steps, schedule_args.penalty_ramp_steps,
        schedule_args.penalty_gate_accuracy, probe))
    if schedule_args.max_train_minutes is not None:
        trainer.add_callback(TimeBudgetCallback(schedule_args.max_train_minutes))
    if schedule_args.compact_progress:
        use_compact_progress(trainer)
    return trainer, data, data_spec, tokenizer


def save_outputs(trainer: Trainer, data_spec: dict, model_args: ModelArguments, data_args: DataArguments, train_result) -> None:
    trainer.save_model()  # weights, config, generation config and tokenizer; rank 0 only
    trainer.save_state()
    output_dir = Path(trainer.args.output_dir)
    rank_summary = {"rank": trainer.args.process_index, "world_size": trainer.args.world_size,
                    "global_step": trainer.state.global_step, "train_loss": train_result.training_loss}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"train_rank{trainer.args.process_index}.json").write_text(json.dumps(rank_summary))
    if trainer.is_world_process_zero():
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        (output_dir / DATA_SPEC_FILE).write_text(json.dumps(data_spec, indent=2))
        config = unwrap_model(trainer.model).config
        task = data_spec["task"]
        sizes = " ".join(str(s) for s in data_spec["train_sizes"])
        card = model_card(output_dir.name, config, task, TASKS[task].knob if task in TASKS else "complexity",
                          model_args.model_name_or_path, f"--task {task} --train_sizes {sizes}",
                          base_model=None)
        (output_dir / "README.md").write_text(card)
