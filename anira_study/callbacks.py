"""Trainer callbacks of the study (each one job, each usable with any `Trainer`).

- `DepthProbeCallback`: every `probe_steps` steps, mean depth, compute loss and per-complexity accuracy
  (per token, on content tokens, whole answers) and depth on a probe set drawn from the validation split,
  logged through `Trainer.log` (so every reporter the Trainer has sees them) and appended to a JSON-lines
  file, which also takes the schedules' event records (`log_event`: a curriculum unlock).
- `ComputePenaltyCallback`: the compute-penalty schedule (zero during a warm-up in steps, optionally
  until the probe's accuracy reaches a gate, then a linear ramp to the target).
- `DepthHoldCallback`: every token at `max_depth`, the depth controller untrained, until the probe's
  accuracy reaches a gate or a step limit passes (the penalty waits for the release too).
- `TimeBudgetCallback`: a wall-time guard; the run records whether it fired.
- `CompactProgressCallback`: the progress bar with the probe's numbers in it; `LinePrinterCallback`:
  one line per probe instead, prefixed by the run's name (for several runs printing at once).

Everything is device- and process-agnostic: the Trainer places the model and shards the data, the probe
runs on every rank (so a gate opens at the same step everywhere: weights are equal under DDP and FSDP
needs every rank in the forward anyway), and only the world-process-zero writes files.
"""

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.utils import logging

from anira_tasks import answer_content_mask

from .data import unwrap_model
from .evaluation import answer_records, item_depths, summarize_by_complexity

logger = logging.get_logger(__name__)

PROBE_PREFIX = "probe"
EVENT_FIELD = "event"  # a probe-log record with this field is an event, not a probe (`anira_study.analysis.read_probe_log`)


class DepthProbeCallback(TrainerCallback):
    """Every `probe_steps` optimizer steps (and at the end), evaluate a small probe set and log

        probe/mean_depth (all real tokens), probe/answer_depth (positions predicting answer tokens),
        probe/compute_loss, probe/compute_penalty, probe/token_accuracy (answer tokens of training sizes),
        probe/content_accuracy (the same over content tokens only), probe/answer_exact (share of training-size
        items whose every answer token is right),
        probe/depth_spearman (rho of items' answer depth and complexity; absent while depth is constant),
        probe/accuracy@<c>, probe/content_accuracy@<c>, probe/answer_exact@<c>, probe/depth@<c>   (c = complexity)

    through `trainer.log` (pass `trainer` or call `attach`): the values land in `state.log_history`
    and in every reporter (TensorBoard, W&B, ...). The world-process-zero also appends each record
    to `log_path` (JSON lines) for `examples/analyze.py`. Pass validation rows only
    (`anira_study.data.probe_rows`): the probe steers training through the penalty gate.

    All accuracies are teacher forced (each answer token predicted after the reference prefix; BREVO: any
    valid next node counts), so `answer_exact` is the whole answer right under teacher forcing, not free
    generation. Content tokens: every answer token except the task's structure symbols
    (`anira_tasks.answer_content_mask`; CLRS's `[ ] , :` and `topo_head`, which the layout fixes, so token
    accuracy there starts far above 0); without structure symbols content accuracy equals token accuracy.
    """

    def __init__(self, probe_rows: list[dict], tokenizer, probe_steps: int = 50, log_path: str | None = None,
                 batch_size: int = 128, trainer=None, seen_sizes=None):
        self.probe_rows = list(probe_rows)
        self.content_masks = [answer_content_mask(row) for row in self.probe_rows]
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
        by_size = self._answer_metrics(records)
        seen_items = [r for r in records if r["complexity"] in self.seen_sizes]
        metrics[f"{PROBE_PREFIX}/content_accuracy"] = self._content_accuracy(records, self.seen_sizes)
        metrics[f"{PROBE_PREFIX}/answer_exact"] = sum(r["answer_correct"] for r in seen_items) / max(len(seen_items), 1)
        depths, complexities = item_depths(records)
        if len(set(depths)) > 1 and len(set(complexities)) > 1:
            from scipy.stats import spearmanr

            metrics[f"{PROBE_PREFIX}/depth_spearman"] = float(spearmanr(depths, complexities)[0])
        for c, values in summary["per_complexity"].items():
            metrics[f"{PROBE_PREFIX}/accuracy@{c}"] = values["token_accuracy"]
            metrics[f"{PROBE_PREFIX}/depth@{c}"] = values["mean_depth"]
            metrics[f"{PROBE_PREFIX}/content_accuracy@{c}"] = by_size[c]["content_accuracy"]
            metrics[f"{PROBE_PREFIX}/answer_exact@{c}"] = by_size[c]["answer_exact"]
        return metrics

    def _content_accuracy(self, records: list[dict], sizes) -> float:
        """Pooled teacher-forced accuracy over the content tokens of the items whose complexity is in `sizes`."""
        hits = [correct for record, mask in zip(records, self.content_masks) if record["complexity"] in sizes
                for correct, content in zip(record["token_correct"], mask) if content]
        return sum(hits) / max(len(hits), 1)

    def _answer_metrics(self, records: list[dict]) -> dict:
        """{complexity: {"content_accuracy", "answer_exact"}} (records are in probe-row order)."""
        sizes = sorted({record["complexity"] for record in records})
        return {size: {"content_accuracy": self._content_accuracy(records, {size}),
                       "answer_exact": (sum(r["answer_correct"] for r in records if r["complexity"] == size)
                                        / sum(r["complexity"] == size for r in records))}
                for size in sizes}

    def log_event(self, state, event: str, values: dict) -> None:
        """Appends an event record `{"event": event, "step": ..., **values}` to the probe log (world-process-zero only);
        readers of the log tell it from a probe record by its `event` field."""
        if self.log_path and state.is_world_process_zero:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps({EVENT_FIELD: event, "step": state.global_step, **values}) + "\n")

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
                 gate_accuracy: float | None = None, probe: DepthProbeCallback | None = None,
                 hold: "DepthHoldCallback | None" = None):
        if gate_accuracy is not None and probe is None:
            raise ValueError("gate_accuracy needs the DepthProbeCallback whose accuracy it reads")
        self.hold = hold  # the ramp never starts while the depth is held (a penalty on a frozen controller means nothing)
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
        if self.hold is not None and self.hold.released_at is None:
            return False
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


class DepthHoldCallback(TrainerCallback):
    """Holds every token at `max_depth` in training, with the depth controller out of the forward (so untrained),
    until the probe's token accuracy on the validation split reaches `accuracy` or, at the latest, until step
    `max_steps`; then hands depth to the controller for the rest of training and logs `depth_hold/released_at`
    (read back when training resumes).

    Why: a controller that learns from step 0 decides on a model that knows nothing yet. In the measured DEPO and
    BREVO runs the online head went to one iteration for every token within a few hundred steps (extra iterations
    of an untrained core only add noise), and the early router saturated on one depth, and in the runs where that
    happened the depth pattern never recovered (`experiments/seeds/`). Holding full depth until the task
    is partly learned lets the controller's first decisions read a model whose iterations do something. What it
    forces: the "learn at full compute, then cut compute" phases of the training dynamics (reported as forced). What
    it does not force: which tokens keep their depth after the release.
    """

    def __init__(self, probe: DepthProbeCallback | None, accuracy: float | None = None, max_steps: int | None = None):
        if accuracy is None and max_steps is None:
            raise ValueError("DepthHoldCallback needs an accuracy gate, a step limit or both")
        if accuracy is not None and probe is None:
            raise ValueError("an accuracy gate needs the DepthProbeCallback whose accuracy it reads")
        self.probe, self.accuracy, self.max_steps = probe, accuracy, max_steps
        self.released_at: int | None = None

    @staticmethod
    def _set(model, hold: bool) -> None:
        unwrap_model(model).model.depth_controller.hold_full_depth = hold

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        for entry in state.log_history:  # resumed run: released where the log says
            if "depth_hold/released_at" in entry:
                self.released_at = int(entry["depth_hold/released_at"])
                break
        self._set(model, self.released_at is None)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.released_at is not None:
            return
        accuracy = self.probe.latest.get(f"{PROBE_PREFIX}/token_accuracy") if self.accuracy is not None else None
        learned = accuracy is not None and accuracy >= self.accuracy
        if learned or (self.max_steps is not None and state.global_step >= self.max_steps):
            self.released_at = state.global_step
            self._set(model, False)
            if self.probe is not None and self.probe.trainer is not None:
                should_log = control.should_log
                self.probe.trainer.log({"depth_hold/released_at": float(self.released_at)})
                control.should_log = should_log

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._set(model, False)  # the switch is a training schedule: the trained model is never held
        if self.released_at is None and state.is_world_process_zero:
            logger.warning(f"the depth hold was never released (validation accuracy stayed below {self.accuracy}): this "
                           "model trained at max_depth with an untrained depth controller, which now sets its depths")


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


class TimeBudgetCallback(TrainerCallback):
    """A wall-time guard: stops training once `minutes` have passed (ranks agree through an all-reduce)
    and logs `time_budget/stopped_at_step`, so a result cut short says so (`fired_at_step`)."""

    def __init__(self, minutes: float, trainer=None):
        self.seconds = 60.0 * minutes
        self.start = time.monotonic()
        self.trainer = trainer
        self.fired_at_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = torch.tensor([float(time.monotonic() - self.start > self.seconds)], device=args.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(over, op=dist.ReduceOp.MAX)
        if over.item() > 0 and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.fired_at_step = state.global_step
            if self.trainer is not None:
                should_log = control.should_log
                self.trainer.log({"time_budget/stopped_at_step": float(state.global_step)})
                control.should_log = should_log


class LinePrinterCallback(TrainerCallback):
    """Prints one line per probe: `[name] step 500  loss 0.41  accuracy 0.93  answer depth 3.10  penalty 0.003`."""

    def __init__(self, name: str):
        self.name = name

    def on_log(self, args, state, control, logs=None, **kwargs):
        key = f"{PROBE_PREFIX}/token_accuracy"
        if state.is_world_process_zero and logs and key in logs:
            print(f"[{self.name}] step {state.global_step:5d}  accuracy {logs[key]:.2f}  "
                  f"answer depth {logs[f'{PROBE_PREFIX}/answer_depth']:.2f}  penalty {logs[f'{PROBE_PREFIX}/compute_penalty']:.4f}",
                  flush=True)
