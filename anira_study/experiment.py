"""The main job: ANIRA-E and ANIRA-O trained side by side on one task, evaluated once on held-out tests.

`run_experiment(args)`:
1. builds the task's splits once and saves them (both models read the same data);
2. trains the two models at the same time, one process each (one torch thread per process: on a
   2-core machine each model gets a core), for a fixed number of *steps*, so the same seed gives the
   same table on one machine whatever else loads it (another CPU rounds differently, and a short run
   amplifies that into another table: measured, AMD EPYC against Intel Xeon). A wall-time guard
   (`max_train_minutes`) can still stop a run on a slow machine; the report and the printed findings
   then say that it fired;
3. each process evaluates its model on the test splits (read once, here, and never during training:
   the probe, the penalty gate and the curriculum read the validation split);
4. the parent assembles the table (accuracies and depths with 95 % intervals, the number of distinct
   prompts per size, rho(depth, complexity) over items with a bootstrap interval), the figures and the
   findings, and writes `report.json`.

What it shows first is the replicated study's answer on the task (`anira_study.study_report.study_answer`, read from
`study_dir/<study_grid>/runs.json` at the start, in seconds): the shipped seed-0 models, their range over seeds and their
depth-need gains, or, while the study has no finished run, a plain statement that it is pending. Its own
3,000-step models come after: a short run that shows what training does in ten minutes, not the finding.
"""

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

MODELS = {"ANIRA-E": "early", "ANIRA-O": "online"}


@dataclass
class ExperimentArguments:
    output_dir: str = field(default="outputs/experiment")
    task: str = field(default="depo")
    # The replicated study's DEPO of protocol v8 (the data its grid `depo-v8` trains; tested equal): hops in unary, so an
    # unseen k holds no untrained symbol, and the earlier queries' answers hidden, so the prompt gives nothing away; the
    # study's answer, the shipped DEPO folders and this run share one task.
    task_params: str = field(default='{"num_nodes": 8, "num_queries": 6, "supervise_all_queries": true, "edge_format": "token", '
                                     '"hop_format": "unary", "show_solved_answers": false}')
    train_sizes: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    extrapolation_sizes: list[int] = field(default_factory=lambda: [5, 6])
    num_train: int = field(default=30_000)
    num_validation: int = field(default=64, metadata={"help": "Validation prompts per training size (read by the probe)."})
    num_test_per_size: int = field(default=250, metadata={"help": "Distinct test prompts per size."})
    model_overrides: str = field(
        # iteration_loss_weight=0: the shipped DEPO models train with the iteration loss, but it makes a step about
        # 1.7x slower here, and 3,000 steps of it gave no better table (experiments/iteration_loss/).
        default="hidden_size=64,intermediate_size=128,num_attention_heads=4,num_prelude_layers=1,"
                "num_core_layers=1,num_coda_layers=1,max_depth=6,iteration_loss_weight=0.0",
        metadata={"help": "Config overrides applied to hub_configs/anira-{e,o}-<family> (head_dim follows the width)."})
    max_steps: int = field(default=3000)
    max_train_minutes: float = field(default=15.0, metadata={"help": "Wall-time guard per model; the findings say when it fired."})
    per_device_train_batch_size: int = field(default=64)
    learning_rate: float = field(default=1e-3, metadata={
        "help": "Protocol v8's (at 3e-3 one hop learns slowly: experiments/learning_rate)."})
    warmup_steps: int = field(default=200)
    compute_penalty: float = field(default=0.003)
    penalty_warmup_steps: int = field(default=0)
    penalty_ramp_steps: int = field(default=1000)
    penalty_gate_accuracy: float | None = field(default=0.9)
    curriculum_accuracy: float | None = field(default=0.8, metadata={"help": "Unlock the next size when the validation "
                                                                              "probe reaches this (None: all sizes from step 0)."})
    depth_init_bias: float | None = field(default=None, metadata={"help": "Override the controllers' initial bias (0: neutral)."})
    unforced: bool = field(default=False, metadata={"help": "Nothing forces the phases: controllers start neutral "
                                                              "(depth_init_bias 0), penalty on from step 0, no gate, no curriculum."})
    probe_steps: int = field(default=100)
    probe_per_size: int = field(default=64)
    seed: int = field(default=0)
    threads: int = field(default=1, metadata={"help": "torch threads per training process (one per core is fastest)."})
    parallel: bool = field(default=True, metadata={"help": "Train the two models in two processes at once."})
    study_dir: str = field(default="experiments/study", metadata={
        "help": "The replicated study's folder: its finished runs of --study_grid are shown first (or that they are pending)."})
    study_grid: str = field(default="depo-v8", metadata={"help": "The study's grid on this job's task and prompts."})
    shipped_models: list[str] = field(
        default_factory=lambda: ["hub_configs/anira-e-depo", "hub_configs/anira-o-depo", "hub_configs/anira-fixed-depo"],
        metadata={"help": "Trained folders to evaluate on the same test prompts (those of another task, or without "
                          "weights, are skipped and said so)."})

    def effective(self) -> "ExperimentArguments":
        """The arguments as run: `--unforced` replaces the schedule that would force the phases."""
        if not self.unforced:
            return self
        return replace(self, depth_init_bias=0.0, penalty_warmup_steps=0, penalty_ramp_steps=0,
                       penalty_gate_accuracy=None, curriculum_accuracy=None)


def _model_overrides(args: ExperimentArguments, depth_mode: str) -> str:
    overrides = f"{args.model_overrides},depth_mode={depth_mode}"
    if args.depth_init_bias is not None:
        overrides += f",depth_init_bias={args.depth_init_bias}"
    return overrides


def train_and_evaluate(name: str, depth_mode: str, args: ExperimentArguments, data_path: str, family: str) -> dict:
    """One model, in its own process: train, save, evaluate on the test splits; a JSON-able summary."""
    import datasets
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    import modeling_anira  # noqa: F401  (registers the Auto classes)
    from anira_study.analysis import read_probe_log, training_phases
    from anira_study.arguments import DataArguments, ModelArguments, ScheduleArguments
    from anira_study.callbacks import LinePrinterCallback
    from anira_study.evaluation import evaluation_report
    from anira_study.trainer import PROBE_LOG_FILE, build_trainer, save_outputs

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    start = time.time()
    output_dir = Path(args.output_dir) / name.lower()
    (output_dir / PROBE_LOG_FILE).unlink(missing_ok=True)  # this job owns its folder: one run, one log
    model_args = ModelArguments(model_name_or_path=f"hub_configs/anira-{'e' if depth_mode == 'early' else 'o'}-{family}",
                                from_scratch=True, config_overrides=_model_overrides(args, depth_mode))
    data_args = DataArguments(task=args.task, task_params=args.task_params, dataset_path=data_path)
    schedule_args = ScheduleArguments(
        compute_penalty=args.compute_penalty, penalty_warmup_steps=args.penalty_warmup_steps,
        penalty_ramp_steps=args.penalty_ramp_steps, penalty_gate_accuracy=args.penalty_gate_accuracy,
        probe_steps=args.probe_steps, probe_per_size=args.probe_per_size, max_train_minutes=args.max_train_minutes,
        curriculum_accuracy=args.curriculum_accuracy)
    training_args = TrainingArguments(
        output_dir=str(output_dir), max_steps=args.max_steps, per_device_train_batch_size=args.per_device_train_batch_size,
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, lr_scheduler_type="cosine", weight_decay=0.0,
        max_grad_norm=1.0, logging_steps=args.probe_steps, save_strategy="no", eval_strategy="no", report_to="none",
        seed=args.seed, data_seed=args.seed, dataloader_num_workers=0, disable_tqdm=True, log_level="error",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer, data, data_spec, tokenizer = build_trainer(model_args, data_args, schedule_args, training_args)
    trainer.pop_callback(PrinterCallback)  # one line per probe instead of every log dict
    trainer.add_callback(LinePrinterCallback(name))
    result = trainer.train()
    save_outputs(trainer, data_spec, model_args, data_args, result, print_metrics=False)
    train_seconds = time.time() - start
    guard = next((cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "TimeBudgetCallback"), None)
    report = evaluation_report(trainer.model, datasets.load_from_disk(data_path), tokenizer)
    records = read_probe_log(output_dir / PROBE_LOG_FILE)
    return {
        "name": name, "depth_mode": depth_mode, "output_dir": str(output_dir),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "depth_init_bias": trainer.model.config.depth_init_bias,
        "steps": trainer.state.global_step, "max_steps": args.max_steps,
        "time_guard_fired_at_step": guard.fired_at_step if guard is not None else None,
        "train_seconds": train_seconds, "eval_seconds": time.time() - start - train_seconds,
        "curriculum": [[int(e["step"]), int(e["curriculum/unlocked_size"])] for e in trainer.state.log_history
                       if "curriculum/unlocked_size" in e],
        "penalty_ramp_start": next((e["penalty/ramp_start"] for e in trainer.state.log_history if "penalty/ramp_start" in e), None),
        "report": report, "phases": training_phases(records), "probe_log": records,
    }


def build_data(args: ExperimentArguments, data_path: Path) -> dict:
    """Builds and saves the splits (the parent does it once for both models); their distinct-prompt counts."""
    import datasets

    from anira_tasks import TaskSpec, build_dataset_dict
    from anira_tasks.dataset import distinct_prompts

    datasets.disable_progress_bars()
    spec = TaskSpec(task=args.task, train_sizes=args.train_sizes, extrapolation_sizes=args.extrapolation_sizes,
                    num_train=args.num_train, num_validation=args.num_validation, num_test_per_size=args.num_test_per_size,
                    seed=args.seed, task_params=json.loads(args.task_params))
    data = build_dataset_dict(spec, num_proc=1)
    data.save_to_disk(str(data_path))
    return {"spec": asdict(spec), "rows": {k: len(v) for k, v in data.items()}, "distinct_prompts": distinct_prompts(data)}


def validate_experiment_arguments(args: ExperimentArguments) -> None:
    """A ValueError naming the first bad argument, before any data are built or a process is started."""
    import math

    from transformers import AutoConfig

    import modeling_anira  # noqa: F401  (registers the Auto classes)
    from anira_tasks import TaskSpec, family_of

    from .arguments import DataArguments, ScheduleArguments, validate_arguments
    from .trainer import apply_config_overrides

    validate_arguments(
        DataArguments(task=args.task, task_params=args.task_params, train_sizes=args.train_sizes,
                      extrapolation_sizes=args.extrapolation_sizes, num_train=args.num_train,
                      num_validation=args.num_validation, num_test_per_size=args.num_test_per_size),
        ScheduleArguments(compute_penalty=args.compute_penalty, penalty_warmup_steps=args.penalty_warmup_steps,
                          penalty_ramp_steps=args.penalty_ramp_steps, penalty_gate_accuracy=args.penalty_gate_accuracy,
                          probe_steps=args.probe_steps, probe_per_size=args.probe_per_size,
                          curriculum_accuracy=args.curriculum_accuracy, max_train_minutes=args.max_train_minutes))
    for name in ("max_steps", "per_device_train_batch_size", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("warmup_steps", "seed"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not math.isfinite(args.learning_rate) or args.learning_rate < 0:
        raise ValueError(f"--learning_rate must be a finite number >= 0, got {args.learning_rate}")
    spec = TaskSpec(task=args.task, train_sizes=args.train_sizes, extrapolation_sizes=args.extrapolation_sizes,
                    num_train=args.num_train, num_validation=args.num_validation,
                    num_test_per_size=args.num_test_per_size, seed=args.seed, task_params=json.loads(args.task_params))
    spec.validate()  # sizes and task parameters
    family = family_of(args.task)
    for depth_mode in MODELS.values():
        folder = Path(f"hub_configs/anira-{'e' if depth_mode == 'early' else 'o'}-{family}")
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is missing (relative to the current folder {Path.cwd()}): run from the "
                             "repository root")
        apply_config_overrides(AutoConfig.from_pretrained(folder), _model_overrides(args, depth_mode))


def run_experiment(args: ExperimentArguments, job_start: float | None = None) -> dict:
    from anira_tasks import family_of

    job_start = job_start or time.time()
    args = args.effective()
    validate_experiment_arguments(args)
    from anira_study.study_report import study_answer

    study = study_answer(args.study_grid, Path(args.study_dir))  # read first: a broken study folder fails in seconds
    print(study["text"] if study["status"] != "results" else
          f"the study on {args.study_grid}: {study['runs']} of {study['expected']} runs finished (shown first in the report)", flush=True)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_path = output_dir / "data"
    data_info = build_data(args, data_path)
    print(f"data: {data_info['rows']} rows; distinct test prompts per size: "
          f"{ {k: v for k, v in data_info['distinct_prompts'].items() if k.startswith('test')} } ({time.time() - job_start:.0f} s)", flush=True)
    family = family_of(args.task)
    jobs = [(name, mode, args, str(data_path), family) for name, mode in MODELS.items()]
    if args.parallel and (os.cpu_count() or 1) >= 2:
        # spawn: a clean interpreter per model (no forked torch thread pools), one core each
        with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(train_and_evaluate, *zip(*jobs)))
    else:
        runs = [train_and_evaluate(*job) for job in jobs]
    runs = {run["name"]: run for run in runs}
    shipped = evaluate_shipped(args, data_path)
    return assemble(args, data_info, runs, shipped, job_start, study)


def evaluate_shipped(args: ExperimentArguments, data_path: Path) -> dict:
    """{name: {"folder", "report", "card"} or {"folder", "skipped": why}} for `args.shipped_models`.

    Their test prompts are this job's: prompts at training sizes come from the test bucket of the prompt
    hash, which no training split of any seed or size ever draws from, so they are held out for the shipped
    models too; the unseen sizes were never trained."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import modeling_anira  # noqa: F401
    from anira_study.evaluation import evaluation_report

    torch.set_num_threads(max(1, min(args.threads * 2, os.cpu_count() or 1)))
    results = {}
    data = None
    for folder in args.shipped_models:
        path = Path(folder)
        name = path.name
        spec_file = path / "report.json"
        if not (path / "model.safetensors").exists() or not spec_file.exists():
            results[name] = {"folder": folder, "skipped": "no trained weights"}
            continue
        shipped = json.loads(spec_file.read_text())
        other = other_task(args, path)
        if other:
            results[name] = {"folder": folder, "skipped": other}
            continue
        if data is None:
            data = datasets.load_from_disk(str(data_path))
            data = datasets.DatasetDict({k: v for k, v in data.items() if k.startswith("test")})
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        results[name] = {"folder": folder, "report": evaluation_report(model, data, tokenizer),
                         "steps": shipped["steps"], "train_minutes": shipped["train_seconds"] / 60,
                         "train_sizes": shipped["train_sizes"]}
    return results


def other_task(args: ExperimentArguments, folder: Path) -> str | None:
    """Why a trained folder's task is not this job's (None when it is): another task, another prompt format (the
    folder's task parameters write other prompts for the same seed and size: the repaired DEPO's unary hops read as
    `<hop=k>` symbols it never trained), or other training sizes (this job's unseen sizes would be its seen ones).
    Its test prompts would mean something else, so it is not scored on them. The folder's task is what
    `evaluation.folder_task_spec` rebuilds (its anira_data.json, or its recipe's last stage)."""
    from anira_tasks import generate_sample

    from anira_study.evaluation import folder_task_spec

    try:
        spec = folder_task_spec(folder)
    except ValueError as error:
        return f"its task parameters are unknown ({error})"
    if isinstance(spec, str):
        return f"it names a saved dataset ({spec}), not task parameters"
    if spec.task != args.task:
        return f"trained on {spec.task}, not {args.task}"
    ours = json.loads(args.task_params)
    if any(generate_sample(args.task, size, seed=0, **ours).prompt
           != generate_sample(args.task, size, seed=0, **spec.task_params).prompt
           for size in [*args.train_sizes, *args.extrapolation_sizes]):
        return f"trained on other {args.task} prompts (task parameters {json.dumps(spec.task_params)}, this job's {json.dumps(ours)})"
    if list(spec.train_sizes) != list(args.train_sizes):
        return f"trained on sizes {list(spec.train_sizes)}, this job on {list(args.train_sizes)}"
    return None


def assemble(args: ExperimentArguments, data_info: dict, runs: dict, shipped: dict, job_start: float,
             study: dict | None = None) -> dict:
    from anira_study.evaluation import format_table
    from anira_study.figures import plot_main_job_complexity, plot_training_dynamics
    from anira_study.findings import findings, print_summary, shipped_findings
    from anira_study.study_report import study_answer

    output_dir = Path(args.output_dir)
    study = study or study_answer(args.study_grid, Path(args.study_dir))
    reports = {name: run["report"] for name, run in runs.items()}
    plot_main_job_complexity(study, reports, args.train_sizes, output_dir / "complexity.png",
                             title=f"{args.task}: accuracy and allocated depth per complexity")
    plot_training_dynamics({name: run["probe_log"] for name, run in runs.items()}, output_dir / "training_dynamics.png")
    table = format_table(reports)
    shipped_reports = {name: entry["report"] for name, entry in shipped.items() if "report" in entry}
    shipped_table = format_table(shipped_reports) if shipped_reports else None
    summary = {
        "arguments": asdict(args),
        "study": {k: v for k, v in study.items() if k != "curves"},
        "data": data_info,
        "models": {name: {k: v for k, v in run.items() if k not in ("report", "probe_log")} for name, run in runs.items()},
        "reports": reports,
        "table": table,
        "findings": findings(args, runs),
        "shipped": shipped,
        "shipped_table": shipped_table,
        "shipped_findings": shipped_findings(shipped),
        "total_seconds": time.time() - job_start,
    }
    (output_dir / "report.json").write_text(json.dumps(summary, indent=2))
    print_summary(args, summary)
    return summary
