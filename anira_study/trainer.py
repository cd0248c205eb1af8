"""Building the HF `Trainer` of `examples/train.py`, and saving what it trained.

- `apply_config_overrides`: `--config_overrides` on a loaded config, with `head_dim` following
  `hidden_size // num_attention_heads` when either changes and no `head_dim` is given (a stored
  `head_dim` of the named config would otherwise keep attention at the old width), and an ungrouped
  config staying ungrouped when `num_attention_heads` changes.
- `load_model_and_tokenizer`: a named `hub_configs/` folder (trained from scratch) or a trained folder.
- `build_trainer`: the Trainer with the collator, the validation probe, the penalty schedule and the
  optional complexity curriculum and wall-time guard; `save_outputs`: weights, tokenizer, data spec, model card.
"""

import functools
import json
import os
from pathlib import Path

import torch

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

from anira_tasks import TASKS, family_of, load_tokenizer
from tokenization import FAMILIES, check_tokenizer_files

from .arguments import DataArguments, ModelArguments, OutputArguments, ScheduleArguments, validate_arguments
from .callbacks import ComputePenaltyCallback, DepthHoldCallback, DepthProbeCallback, TimeBudgetCallback, use_compact_progress
from .curriculum import ComplexityCurriculum, CurriculumCallback
from .data import load_data, make_collator, probe_rows, unwrap_model
from .model_cards import model_card

DATA_SPEC_FILE = "anira_data.json"
SHAPE_FIELDS = {"vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "num_prelude_layers", "num_core_layers", "num_coda_layers", "injection", "depth_mode", "max_depth", "min_depth"}
PROBE_LOG_FILE = "probe_log.jsonl"


def apply_config_overrides(config, overrides: str | None):
    """`config.update_from_string(overrides)`, then validation; `head_dim` is re-derived from the new
    `hidden_size // num_attention_heads` when the overrides change either of them without naming it."""
    if not overrides:
        return config
    values = dict(item.split("=", 1) for item in overrides.split(",") if "=" in item)
    values = {key.strip(): value.strip() for key, value in values.items()}
    derived = []
    if values.keys() & {"hidden_size", "num_attention_heads"}:
        try:
            hidden = int(values.get("hidden_size", config.hidden_size))
            heads = int(values.get("num_attention_heads", config.num_attention_heads))
        except ValueError:
            hidden = heads = 0  # not integers: update_from_string names the field
        if heads > 0 and "head_dim" not in values:
            derived.append(f"head_dim={hidden // heads}")
        if "num_attention_heads" in values and "num_key_value_heads" not in values and heads > 0 \
                and config.num_key_value_heads == config.num_attention_heads:
            derived.append(f"num_key_value_heads={heads}")  # no grouping stays no grouping
    config.update_from_string(",".join([overrides, *derived]))
    config.validate()
    return config


def load_config(name_or_path: str):
    """`AutoConfig.from_pretrained`, with a ValueError that names the folder when there is none (transformers
    answers a missing local folder with a Hub connection error)."""
    path = Path(name_or_path)
    where = "" if path.is_absolute() else (f" (relative to the current folder {Path.cwd()}: run from the repository root "
                                           "or give an absolute path)")
    hub_id = (not path.is_absolute() and not str(name_or_path).startswith((".", "~")) and str(name_or_path).count("/") == 1
              and path.parts[0] not in ("hub_configs", "outputs"))
    if not path.exists() and not hub_id:  # no Hub request, whose connection error would hide the missing folder
        raise ValueError(f"--model_name_or_path {name_or_path!r}: no such folder{where}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"{path / 'config.json'} is missing: --model_name_or_path {name_or_path} is not a model folder")
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except OSError as error:
        first = str(error).splitlines()[0]
        if path.exists():
            raise ValueError(f"--model_name_or_path {name_or_path}: {first}") from None
        raise ValueError(f"--model_name_or_path {name_or_path!r} is neither a folder{where} nor a model the Hub could "
                         f"give ({first})") from None


def check_tokenizer_fits_task(tokenizer, task: str, source: str) -> None:
    """The task's data are token ids of its family's tokenizer (`anira_tasks.load_tokenizer`): a model folder's
    tokenizer must give every one of those symbols the same id, or training reads the data as other symbols
    (DEPO's `v29` as MANO's `8`)."""
    family = family_of(task)
    expected, vocabulary = load_tokenizer(family).get_vocab(), tokenizer.get_vocab()
    symbols = sorted(expected, key=expected.get)
    missing = [symbol for symbol in symbols if symbol not in vocabulary]
    moved = [symbol for symbol in symbols if symbol in vocabulary and vocabulary[symbol] != expected[symbol]]
    if not missing and not moved:
        return
    other = next((name for name in FAMILIES if load_tokenizer(name).get_vocab() == vocabulary), None)
    holds = f"the {other!r} family's tokenizer" if other else "a tokenizer of another vocabulary"
    detail = (f"it lacks {len(missing)} of its symbols, e.g. {missing[:3]}" if missing
              else f"{len(moved)} of its symbols have other ids, e.g. {moved[:3]}")
    raise ValueError(f"{source} holds {holds}, but --task {task} is a {family!r} task ({detail}): its data would be "
                     f"read as other symbols; use a folder of the {family!r} family (hub_configs/anira-*-{family})")


# What `compile_layers` compiles: the layer pieces both recurrence paths call (the dense path a layer's forward, the
# fast path its norm and projections in one method and its output projection, `after_attention` and mask in another,
# the iteration loss's readouts likewise: two compiled calls per layer application, not four), and every RMSNorm.
COMPILED_LAYER_METHODS = ("forward", "after_attention", "project_rows", "project_selected", "finish_rows")
COMPILED_ATTENTION_METHODS = ("project_query", "project_key_value")


def compile_layers(model, dynamic: bool = True):
    """Replaces, on this model's modules only, the methods above by `torch.compile`d versions that run while the model
    trains with gradients on (`module.training` and grad mode); evaluation, the probe and generation keep the eager
    methods (a cache object is no graph input). The depth loop around them stays eager, so its data-dependent control
    flow breaks no graph. Row counts and lengths vary from batch to batch: shapes are dynamic from the first call.
    Measured: benchmarks/model/RESULTS.md. Returns the model."""
    from modeling_anira.depth_control import AniraRMSNorm
    from modeling_anira.modeling_anira import AniraAttention, AniraDecoderLayer

    def swap(module, name):
        eager = getattr(module, name)
        compiled = torch.compile(eager, dynamic=dynamic)

        def call(*args, **kwargs):
            return (compiled if module.training and torch.is_grad_enabled() else eager)(*args, **kwargs)

        setattr(module, name, call)

    for module in model.modules():
        if isinstance(module, AniraDecoderLayer):
            for name in COMPILED_LAYER_METHODS:
                swap(module, name)
        elif isinstance(module, AniraAttention):
            for name in COMPILED_ATTENTION_METHODS:
                swap(module, name)
        elif isinstance(module, AniraRMSNorm):
            swap(module, "forward")
    return model


def whole_forward_problem(config) -> str | None:
    """Why `compile_model` cannot compile this configuration's training forward as one graph, or None."""
    if config.depth_mode == "early" and config.router_gradient != "full":
        return (f"router_gradient={config.router_gradient!r} runs the loop to the batch's deepest token (a tensor "
                "value) and gathers the tokens it computes; only router_gradient='full' computes every iteration of "
                "every token; use --compile_layers")
    return None


def compile_model(model, dynamic: bool = True):
    """Replaces this model's `forward` by one `torch.compile(fullgraph=True)`d graph for training steps (`model.training`
    and grad mode): embedding, prelude, the whole depth loop, coda, iteration-loss readouts and losses, and hence one
    fused backward. Where the training forward's loop reads no tensor value: fixed depth, ANIRA-E with the exact router
    gradient (`router_gradient="full"`: every token through all max_depth iterations) and ANIRA-O (every iteration of
    the budget runs, each over the tokens it computes, their count a graph symbol: `fast_path._traced_iteration`); a
    ValueError names the one other configuration, `router_gradient="next"` (`whole_forward_problem`). A model held at
    full depth (`hold_full_depth`, --depth_hold_*) runs its eager forward while held; evaluation, the probe and
    generation run eager. Traced, the forward selects the supervised positions through a graph symbol
    (`captures_row_counts`), the readouts' last coda layer and ANIRA-O's core layers attend without packing
    (`fast_path.layer_at_rows`), and the random numbers (Gumbel noise) are drawn by eager's generator
    (`fallback_random`), so the losses and gradients equal eager's within float rounding (and ANIRA-O's depths are
    eager's unless a halting probability lies within rounding of the threshold). Shapes are dynamic from the first
    call: packed batches of any rows and lengths reuse one graph. Measured: benchmarks/model/RESULTS.md. Returns the
    model."""
    problem = whole_forward_problem(model.config)
    if problem is not None:
        raise ValueError(f"--compile_model cannot compile this model's training forward as one graph: {problem}")
    eager = model.forward
    compiled = torch.compile(eager, fullgraph=True, dynamic=dynamic, options={"fallback_random": True})
    controller = model.model.depth_controller

    @functools.wraps(eager)  # the forward's signature: the Trainer keeps the dataset columns it names
    def forward(*args, **kwargs):
        if model.training and torch.is_grad_enabled() and not getattr(controller, "hold_full_depth", False):
            with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
                return compiled(*args, **kwargs)
        return eager(*args, **kwargs)

    model.forward = forward
    return model


def load_model_and_tokenizer(model_args: ModelArguments, task: str):
    path = Path(model_args.model_name_or_path)
    config = apply_config_overrides(load_config(model_args.model_name_or_path), model_args.config_overrides)
    has_tokenizer = (path / "tokenizer.json").exists() or not path.exists()
    if path.is_dir() and has_tokenizer:
        check_tokenizer_files(path)  # a ValueError naming a corrupt file, not transformers' generic message
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path) if has_tokenizer else load_tokenizer(task)
    has_weights = path.exists() and any(path.glob("*.safetensors")) and not model_args.from_scratch
    reshaped = {k.split("=")[0].strip() for k in (model_args.config_overrides or "").split(",")} & SHAPE_FIELDS
    if has_weights and reshaped:
        raise ValueError(f"{model_args.model_name_or_path} holds trained weights, which --config_overrides {sorted(reshaped)} "
                         "would not fit: pass --from_scratch true to train that configuration from scratch")
    if has_weights:
        model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, config=config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    if config.vocab_size != len(tokenizer):
        raise ValueError(f"config.vocab_size = {config.vocab_size} but the tokenizer has {len(tokenizer)} symbols: "
                         f"use the hub_configs/ folder of the task family of {task!r}")
    model.model.recurrence = model_args.recurrence
    if model_args.compile_layers and model_args.compile_model:
        raise ValueError("--compile_layers and --compile_model: choose one (the whole compiled forward holds the layers)")
    if model_args.compile_layers:
        compile_layers(model)
    if model_args.compile_model:
        compile_model(model)
    # Generation decodes with the cache (the training config's use_cache=False must not reach the saved generation config).
    model.generation_config.update(do_sample=False, use_cache=True, pad_token_id=tokenizer.pad_token_id,
                                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return model, tokenizer


def build_trainer(model_args: ModelArguments, data_args: DataArguments, schedule_args: ScheduleArguments, training_args,
                  data=None, data_spec: dict | None = None):
    """The Trainer of `examples/train.py` with its callbacks, plus (data, data spec, tokenizer).

    `data`/`data_spec` skip building the splits when the caller has them (the main job builds them once
    for both models). The probe reads the validation split only."""
    validate_arguments(data_args, schedule_args, model_args)
    set_seed(training_args.seed)
    model, tokenizer = load_model_and_tokenizer(model_args, data_args.task)
    checked = data is None and not data_args.dataset_path
    if checked:  # before the data are built
        check_tokenizer_fits_task(tokenizer, data_args.task, model_args.model_name_or_path)
    if data is None:
        data, data_spec = load_data(data_args)
    if not checked:  # a saved dataset's own task
        check_tokenizer_fits_task(tokenizer, data_spec["task"], model_args.model_name_or_path)
    if schedule_args.compute_penalty is not None:
        model.config.compute_penalty = schedule_args.compute_penalty
    target_penalty = model.config.compute_penalty
    train_dataset = data["train"].select_columns(["input_ids", "labels", "complexity"])
    curriculum = None
    if schedule_args.curriculum_accuracy is not None:
        curriculum = ComplexityCurriculum(train_dataset, data_spec["train_sizes"])
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=curriculum if curriculum is not None else train_dataset,
        eval_dataset=data["validation"].select_columns(["input_ids", "labels"]),
        data_collator=make_collator(tokenizer.pad_token_id, data_args.padding_free),
        processing_class=tokenizer,
    )
    probe = DepthProbeCallback(probe_rows(data, schedule_args.probe_per_size), tokenizer, schedule_args.probe_steps,
                               log_path=os.path.join(training_args.output_dir, PROBE_LOG_FILE),
                               seen_sizes=data_spec["train_sizes"]).attach(trainer)
    hold = None
    if schedule_args.depth_hold_accuracy is not None or schedule_args.depth_hold_steps is not None:
        if model.config.depth_mode == "fixed":
            raise ValueError("--depth_hold_accuracy / --depth_hold_steps hold an adaptive model at max_depth: "
                             "a fixed-depth model has no controller to hold")
        hold = DepthHoldCallback(probe, schedule_args.depth_hold_accuracy, schedule_args.depth_hold_steps)
        trainer.add_callback(hold)
    trainer.add_callback(ComputePenaltyCallback(
        target_penalty, schedule_args.penalty_warmup_steps, schedule_args.penalty_ramp_steps,
        schedule_args.penalty_gate_accuracy, probe, hold))
    if curriculum is not None:
        trainer.add_callback(CurriculumCallback(curriculum, probe, schedule_args.curriculum_accuracy, schedule_args.curriculum_metric))
    if schedule_args.max_train_minutes is not None:
        trainer.add_callback(TimeBudgetCallback(schedule_args.max_train_minutes, trainer))
    if schedule_args.compact_progress:
        use_compact_progress(trainer)
    return trainer, data, data_spec, tokenizer


def parameter_digest(model) -> str:
    """sha256 of the trained parameters (name order, float bytes). Data-parallel ranks hold bitwise-identical
    replicas (one averaged gradient, one optimizer step), so `train_rank*.json` shows whether the ranks
    trained one model or each its own."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(unwrap_model(model).named_parameters()):
        tensor = param.detach()
        if hasattr(tensor, "full_tensor"):  # an FSDP2 shard: every rank gathers the whole parameter
            tensor = tensor.full_tensor()
        digest.update(name.encode())
        digest.update(tensor.float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_outputs(trainer: Trainer, data_spec: dict, model_args: ModelArguments, data_args: DataArguments, train_result,
                 print_metrics: bool = True) -> None:
    trainer.save_model()  # weights, config, generation config and tokenizer; rank 0 only
    trainer.save_state()
    output_dir = Path(trainer.args.output_dir)
    rank_summary = {"rank": trainer.args.process_index, "world_size": trainer.args.world_size,
                    "global_step": trainer.state.global_step, "train_loss": train_result.training_loss,
                    "parameter_sha256": parameter_digest(trainer.model)}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"train_rank{trainer.args.process_index}.json").write_text(json.dumps(rank_summary))
    if trainer.is_world_process_zero():
        if print_metrics:
            trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        (output_dir / DATA_SPEC_FILE).write_text(json.dumps(data_spec, indent=2))
        config = unwrap_model(trainer.model).config
        task = data_spec["task"]
        sizes = " ".join(str(s) for s in data_spec["train_sizes"])
        card = model_card(output_dir.name, config, task, TASKS[task].knob if task in TASKS else "complexity",
                          model_args.model_name_or_path, f"--task {task} --train_sizes {sizes}")
        (output_dir / "README.md").write_text(card)


def validate_training_arguments(training_args) -> None:
    """The `TrainingArguments` mistakes the Trainer would only trip over later (or never)."""
    import math

    if training_args.per_device_train_batch_size < 1:
        raise ValueError(f"--per_device_train_batch_size must be >= 1, got {training_args.per_device_train_batch_size}")
    if training_args.max_steps == 0 or (training_args.max_steps < 0 and training_args.num_train_epochs <= 0):
        raise ValueError(f"nothing to train: --max_steps {training_args.max_steps}, --num_train_epochs {training_args.num_train_epochs}")
    if training_args.max_steps < -1:
        raise ValueError(f"--max_steps must be > 0 (or -1 to use --num_train_epochs), got {training_args.max_steps}")
    if not math.isfinite(training_args.learning_rate) or training_args.learning_rate < 0:
        raise ValueError(f"--learning_rate must be a finite number >= 0, got {training_args.learning_rate}")


def check_output_dir(training_args, resuming: bool) -> None:
    """Refuses to train into a folder that holds a finished run (its weights would be overwritten and its
    probe log mixed with this run's) unless resuming from it; `--overwrite_output_dir true` clears it.
    Also makes `--resume_from_checkpoint last` an error when there is no checkpoint to resume."""
    output_dir = Path(training_args.output_dir)
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    finished = [name for name in ("model.safetensors", PROBE_LOG_FILE) if (output_dir / name).exists()]
    if finished and not resuming and not overwrite:
        raise ValueError(f"--output_dir {output_dir} already holds a run ({', '.join(finished)}): choose another folder, "
                         "resume it with --resume_from_checkpoint last, or pass --overwrite_output_dir true")
    if overwrite and not resuming:
        for name in finished:
            (output_dir / name).unlink()


def launched_processes() -> int:
    """How many processes the launcher started: torchrun's `WORLD_SIZE` (or MPI's), 1 without a launcher."""
    from accelerate.utils import get_int_from_env

    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


def use_cpu_for_launched_processes() -> None:
    """Several launched processes on a machine with no accelerator train as one CPU (gloo) data-parallel group.

    Without it, `torchrun --nproc_per_node N examples/train.py ...` on CPU ran N independent trainings into one
    folder: accelerate's `PartialState` (built by `TrainingArguments.__post_init__`) forms a CPU process group
    only when told the run is on CPU (`use_cpu`, or `ACCELERATE_USE_CPU`, which `accelerate launch --cpu` sets);
    otherwise it asks for the accelerator's backend, finds none, and makes every process a one-process run on
    all the data. Must run before the `TrainingArguments` are built."""
    from accelerate.utils.imports import get_distributed_backend, get_torch_accelerator_backend

    if launched_processes() > 1 and get_distributed_backend(get_torch_accelerator_backend()[0]) is None:
        os.environ["ACCELERATE_USE_CPU"] = "true"


def check_launched_processes(training_args) -> None:
    """Refuses a run whose launcher started several processes that the Trainer would not train as one group, and
    one whose launcher asked for several but started one: `accelerate launch --num_processes N` on a machine with
    no GPU (`--cpu` or not) runs its simple launcher, which sets `MASTER_ADDR` for the N processes and then starts
    a single one with no `WORLD_SIZE` (accelerate starts several CPU processes only through mpirun)."""
    launched = launched_processes()
    if launched == 1 and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        raise ValueError("MASTER_ADDR is set but the launcher started this process alone (accelerate launch starts one "
                         "process on CPUs): use torchrun --nproc_per_node N examples/train.py ..., or unset MASTER_ADDR")
    if launched > 1 and (training_args.world_size != launched or training_args.parallel_mode.value != "distributed"):
        raise ValueError(f"the launcher started {launched} processes but the Trainer sees {training_args.world_size} "
                         f"({training_args.parallel_mode.value}): each process would train its own model on all the data; "
                         "pass --use_cpu true to train them as one CPU (gloo) group")


def train_from_argv(argv: list[str] | None = None) -> Trainer:
    """`examples/train.py`: parse the arguments (or one JSON file), check them all, train, save."""
    import logging
    import sys

    import transformers
    from transformers import HfArgumentParser, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    use_cpu_for_launched_processes()
    parser = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments, OutputArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, schedule_args, training_args, output_args = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, schedule_args, training_args, output_args = parser.parse_args_into_dataclasses(args=argv)
    training_args.overwrite_output_dir = output_args.overwrite_output_dir
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=training_args.get_process_log_level())
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    validate_arguments(data_args, schedule_args, model_args)
    validate_training_arguments(training_args)
    check_launched_processes(training_args)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint == "last":
        checkpoint = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if checkpoint is None:
            raise ValueError(f"--resume_from_checkpoint last: no checkpoint-* folder in {training_args.output_dir}")
    check_output_dir(training_args, resuming=checkpoint is not None)
    trainer, data, data_spec, tokenizer = build_trainer(model_args, data_args, schedule_args, training_args)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, data_spec, model_args, data_args, train_result)
    if training_args.push_to_hub:
        trainer.create_model_card = lambda **kwargs: None  # keep the ANIRA card save_outputs wrote as README.md
        trainer.push_to_hub(commit_message="ANIRA trained with examples/train.py")
    return trainer
