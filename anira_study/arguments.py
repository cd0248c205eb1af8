"""The argument dataclasses of `examples/train.py` (read by `HfArgumentParser` next to `TrainingArguments`).

Every value is checked by `validate_arguments` before anything is built, so a bad value fails in the
first second with a message that names it, not after a training run.
"""

import json
import math
from dataclasses import dataclass, field

from anira_tasks import TASKS

CURRICULUM_METRICS = ("token_accuracy", "answer_exact")  # what --curriculum_metric may name (anira_study.curriculum)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="hub_configs/anira-o-clrs",
        metadata={"help": "A hub_configs/ folder (config only: trained from scratch) or a trained folder (fine-tuned)."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Train the folder's configuration from a fresh initialisation even when it holds weights "
                          "(how examples/reproduce.py retrains a named model)."},
    )
    recurrence: str = field(
        default="fast",
        metadata={"help": "'fast' computes only the token-iterations the loss and its gradient need (the default); "
                          "'dense' runs the masked reference path (same loss and gradients, full cost)."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated config overrides, e.g. 'hidden_size=64,max_depth=4,depth_mode=early'. "
                          "head_dim follows hidden_size // num_attention_heads unless given too."},
    )
    compile_layers: bool = field(
        default=False,
        metadata={"help": "Compile each decoder layer's pieces and the RMSNorms with torch.compile for training steps "
                          "(anira_study.trainer.compile_layers: fused elementwise kernels; the depth loop stays eager; "
                          "evaluation and generation run eager). Equal to eager within float rounding, not bit for bit."},
    )
    compile_model: bool = field(
        default=False,
        metadata={"help": "Compile the whole training forward (depth loop, readouts and losses) as one torch.compile "
                          "graph, hence one fused backward (anira_study.trainer.compile_model). Every depth mode but "
                          "ANIRA-E with router_gradient='next' (a ValueError names it); evaluation and "
                          "generation run eager. Equal to eager within float rounding, not bit for bit."},
    )


@dataclass
class DataArguments:
    task: str = field(default="minimum", metadata={"help": f"One of {sorted(TASKS)}."})
    train_sizes: list[int] = field(default_factory=lambda: [2, 3, 4], metadata={"help": "Complexities trained on."})
    interpolation_sizes: list[int] = field(default_factory=list, metadata={"help": "Held-out complexities inside the training range."})
    extrapolation_sizes: list[int] = field(default_factory=lambda: [5, 6], metadata={"help": "Complexities above the training range."})
    train_size_weights: str | None = field(
        default=None, metadata={"help": "Comma-separated relative frequencies of the training sizes in the train split, in "
                                        "--train_sizes order, e.g. '1,1,2,4' (default: the task's own distribution). "
                                        "Validation and test splits do not depend on it."})
    num_train: int = field(default=20_000)
    num_validation: int = field(default=64, metadata={"help": "Validation prompts per training size (the probe reads them)."})
    num_test_per_size: int = field(default=200, metadata={"help": "Distinct test prompts per size, in every test split."})
    task_seed: int = field(default=0, metadata={"help": "Seed of the task data (independent of --seed, the training seed)."})
    task_params: str = field(default="{}", metadata={"help": "JSON task parameters, e.g. '{\"max_key\": 7}' (minimum), '{\"num_nodes\": 5}' (depo)."})
    dataset_path: str | None = field(default=None, metadata={"help": "A DatasetDict saved with save_to_disk (replaces the task arguments)."})
    num_proc: int | None = field(
        default=None, metadata={"help": "Worker processes that build the training split (default: one per CPU core; 1: "
                                        "in the training process, e.g. while other jobs hold cores). The data do not "
                                        "depend on it."})
    padding_free: bool = field(
        default=True, metadata={"help": "Pack each batch's samples into as few rows as fit, position ids restarting per "
                                        "sample (same losses and gradients as padded rows, less padding computed); "
                                        "false: right-pad every sample to the batch's longest."})


@dataclass
class ScheduleArguments:
    compute_penalty: float | None = field(default=None, metadata={"help": "Target weight of the compute loss (default: the config's)."})
    penalty_warmup_steps: int = field(default=0, metadata={"help": "Steps with compute_penalty = 0 before the ramp can start."})
    penalty_ramp_steps: int = field(default=0, metadata={"help": "Steps of the linear ramp from 0 to the target."})
    penalty_gate_accuracy: float | None = field(
        default=None, metadata={"help": "Also wait until the probe's accuracy on the validation split reaches this."})
    depth_hold_accuracy: float | None = field(
        default=None, metadata={"help": "Run every token at max_depth, the depth controller untrained, until the validation "
                                        "probe's accuracy reaches this; the penalty's ramp waits for the release too."})
    depth_hold_steps: int | None = field(
        default=None, metadata={"help": "Hold (as --depth_hold_accuracy) until this step at the latest; alone: exactly this many steps."})
    probe_steps: int = field(default=50, metadata={"help": "Probe the validation split every this many steps (0: only at the end)."})
    probe_per_size: int = field(default=32, metadata={"help": "Probe rows per training size (from the validation split)."})
    curriculum_accuracy: float | None = field(
        default=None, metadata={"help": "Complexity curriculum: start with the smallest training size and unlock the next "
                                        "once the validation probe's accuracy at every unlocked size reaches this."})
    curriculum_metric: str = field(
        default="token_accuracy", metadata={"help": "What --curriculum_accuracy is compared with at each unlocked size: "
                                                    "'token_accuracy' (teacher-forced accuracy over every answer token, "
                                                    "structure symbols included) or 'answer_exact' (share of prompts whose "
                                                    "whole answer is right, teacher forced)."})
    max_train_minutes: float | None = field(default=None, metadata={"help": "Wall-time guard: stop after this long (all ranks agree); "
                                                                            "the run records that it fired."})
    compact_progress: bool = field(default=False, metadata={"help": "Show probe metrics in the progress bar instead of printing logs."})


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into an --output_dir that holds a finished run "
                                                                          "(its weights and probe log are replaced)."})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def parse_size_weights(text: str | None, train_sizes: list[int]) -> tuple[float, ...]:
    """`--train_size_weights '1,1,2,4'` as floats (empty when not given); ValueError naming what is wrong."""
    if text is None or not text.strip():
        return ()
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--train_size_weights must be comma-separated numbers, got {text!r}") from None
    _check(len(weights) == len(train_sizes),
           f"--train_size_weights has {len(weights)} values for the {len(train_sizes)} --train_sizes {list(train_sizes)}")
    _check(all(math.isfinite(w) and w > 0 for w in weights),
           f"--train_size_weights must be finite and > 0 (leave a size out of --train_sizes instead), got {text!r}")
    return weights


def validate_arguments(data_args: DataArguments, schedule_args: ScheduleArguments, model_args: ModelArguments | None = None) -> None:
    """ValueError naming the first bad argument (task parameters are checked by the task's TaskSpec)."""
    if model_args is not None:
        _check(model_args.recurrence in ("fast", "dense"), f"--recurrence must be 'fast' or 'dense', got {model_args.recurrence!r}")
    _check(data_args.task in TASKS or data_args.dataset_path is not None, f"--task must be one of {sorted(TASKS)}, got {data_args.task!r}")
    try:
        params = json.loads(data_args.task_params)
    except json.JSONDecodeError as error:
        raise ValueError(f"--task_params is not valid JSON ({error.msg}): {data_args.task_params!r}") from None
    _check(isinstance(params, dict), f"--task_params must be a JSON object, got {data_args.task_params!r}")
    parse_size_weights(data_args.train_size_weights, data_args.train_sizes)
    for name in ("num_train", "num_validation", "num_test_per_size"):
        _check(getattr(data_args, name) >= 1, f"--{name} must be >= 1, got {getattr(data_args, name)}")
    _check(data_args.task_seed >= 0, f"--task_seed must be >= 0, got {data_args.task_seed}")
    _check(data_args.num_proc is None or data_args.num_proc >= 1, f"--num_proc must be >= 1, got {data_args.num_proc}")
    penalty = schedule_args.compute_penalty
    _check(penalty is None or (math.isfinite(penalty) and penalty >= 0), f"--compute_penalty must be a finite number >= 0, got {penalty}")
    for name in ("penalty_warmup_steps", "penalty_ramp_steps", "probe_steps"):
        _check(getattr(schedule_args, name) >= 0, f"--{name} must be >= 0, got {getattr(schedule_args, name)}")
    _check(schedule_args.probe_per_size >= 1, f"--probe_per_size must be >= 1, got {schedule_args.probe_per_size}")
    gate = schedule_args.penalty_gate_accuracy
    _check(gate is None or 0.0 <= gate <= 1.0, f"--penalty_gate_accuracy must lie in [0, 1], got {gate}")
    hold = schedule_args.depth_hold_accuracy
    _check(hold is None or 0.0 <= hold <= 1.0, f"--depth_hold_accuracy must lie in [0, 1], got {hold}")
    hold_steps = schedule_args.depth_hold_steps
    _check(hold_steps is None or hold_steps >= 0, f"--depth_hold_steps must be >= 0, got {hold_steps}")
    curriculum = schedule_args.curriculum_accuracy
    _check(curriculum is None or 0.0 <= curriculum <= 1.0, f"--curriculum_accuracy must lie in [0, 1], got {curriculum}")
    _check(schedule_args.curriculum_metric in CURRICULUM_METRICS,
           f"--curriculum_metric must be one of {list(CURRICULUM_METRICS)}, got {schedule_args.curriculum_metric!r}")
    minutes = schedule_args.max_train_minutes
    _check(minutes is None or minutes > 0, f"--max_train_minutes must be > 0, got {minutes}")
