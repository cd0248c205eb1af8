"""The main job: a small, complete complexity-controlled experiment on CPU in under 10 minutes.

    python examples/experiment.py                      # defaults below: CLRS `minimum`, sizes 2-4 seen, 5-6 unseen
    python examples/experiment.py --max_steps 200 --output_dir /tmp/quick   # a faster smoke run
    python examples/experiment.py --task brevo --task_params '{}' --train_sizes 3 4 5 --extrapolation_sizes 6 7

Trains ANIRA-E (early depth decision) and ANIRA-O (online halting) on the same task and data, evaluates
both on the training sizes (seen) and on larger sizes (unseen), prints per complexity the accuracy and the
mean depth at the positions that predict answer tokens, with Spearman's rho between depth and complexity,
and writes `report.json`, `complexity.png` and `training_dynamics.png` to `--output_dir`.
The defaults were chosen by measuring what a small model learns on a 2-core CPU within a few minutes
(benchmarks/experiment/README.md).
"""

import time

PROCESS_START = time.time()  # the 10-minute budget counts imports too

import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

# examples/evaluate.py would shadow the `evaluate` library for the scripts of this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import HfArgumentParser, TrainingArguments  # noqa: E402

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from anira_tasks import load_tokenizer  # noqa: E402
from tokenization import family_of  # noqa: E402
from anira_tasks.training import (DataArguments, ModelArguments, ScheduleArguments, build_trainer, load_data,  # noqa: E402
                                  save_outputs)
from anira_tasks.analysis import (evaluation_report, format_table, plot_complexity, plot_training_dynamics,  # noqa: E402
                                  read_probe_log, training_phases)

MODELS = {"ANIRA-E": "early", "ANIRA-O": "online"}


@dataclass
class ExperimentArguments:
    output_dir: str = field(default="outputs/experiment")
    task: str = field(default="minimum")
    task_params: str = field(default='{"max_key": 7}')
    train_sizes: list[int] = field(default_factory=lambda: [2, 3, 4])
    extrapolation_sizes: list[int] = field(default_factory=lambda: [5, 6])
    num_train: int = field(default=40_000)
    num_test_per_size: int = field(default=200)
    model_overrides: str = field(
        default="hidden_size=64,intermediate_size=128,num_attention_heads=4,num_prelude_layers=1,"
                "num_core_layers=1,num_coda_layers=1,max_depth=4",
        metadata={"help": "Config overrides applied to hub_configs/anira-{e,o}-<family>."})
    max_steps: int = field(default=2500)
    max_train_minutes: float = field(default=3.6, metadata={"help": "Wall-time cap per model (keeps the job under 10 minutes)."})
    per_device_train_batch_size: int = field(default=32)
    learning_rate: float = field(default=1e-3)
    warmup_steps: int = field(default=50)
    compute_penalty: float = field(default=0.003)
    penalty_warmup_steps: int = field(default=200)
    penalty_ramp_steps: int = field(default=300)
    penalty_gate_accuracy: float | None = field(default=0.8)
    probe_steps: int = field(default=50)
    probe_per_size: int = field(default=64)
    seed: int = field(default=0)
    threads: int = field(default=1, metadata={"help": "torch CPU threads: one is fastest for this tiny model, and two thrash when other processes share the cores."})


def train_one(name: str, depth_mode: str, args: ExperimentArguments, family: str) -> dict:
    output_dir = Path(args.output_dir) / name.lower()
    model_args = ModelArguments(model_name_or_path=f"hub_configs/{'anira-e' if depth_mode == 'early' else 'anira-o'}-{family}",
                                config_overrides=f"{args.model_overrides},depth_mode={depth_mode}")
    data_args = DataArguments(task=args.task, train_sizes=args.train_sizes, extrapolation_sizes=args.extrapolation_sizes,
                              num_train=args.num_train, num_test_per_size=args.num_test_per_size, task_params=args.task_params,
                              dataset_path=str(Path(args.output_dir) / "data"))
    schedule_args = ScheduleArguments(compute_penalty=args.compute_penalty, penalty_warmup_steps=args.penalty_warmup_steps,
                                      penalty_ramp_steps=args.penalty_ramp_steps, penalty_gate_accuracy=args.penalty_gate_accuracy,
                                      probe_steps=args.probe_steps, probe_per_size=args.probe_per_size, max_train_minutes=args.max_train_minutes, compact_progress=True)
    training_args = TrainingArguments(
        output_dir=str(output_dir), max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size, learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps, lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=args.probe_steps, save_strategy="no", eval_strategy="no", report_to="none", seed=args.seed,
        dataloader_num_workers=0, disable_tqdm=False, log_level="warning", use_cpu=not torch.cuda.is_available(),
    )
    if (output_dir / "probe_log.jsonl").exists():
        (output_dir / "probe_log.jsonl").unlink()
    print(f"\n== training {name} (depth_mode={depth_mode}) -> {output_dir}", flush=True)
    start = time.time()
    trainer, data, data_spec, tokenizer = build_trainer(model_args, data_args, schedule_args, training_args)
    result = trainer.train()
    save_outputs(trainer, data_spec, model_args, data_args, result)
    return {"trainer": trainer, "data": data, "tokenizer": tokenizer, "seconds": time.time() - start,
            "steps": trainer.state.global_step, "output_dir": output_dir}


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(ExperimentArguments).parse_args_into_dataclasses(args=argv)
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    job_start = PROCESS_START
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    # One dataset for both models, built once and saved (train.py reads it back with --dataset_path).
    tokenizer = load_tokenizer(args.task)
    data_args = DataArguments(task=args.task, train_sizes=args.train_sizes, extrapolation_sizes=args.extrapolation_sizes,
                              num_train=args.num_train, num_test_per_size=args.num_test_per_size, task_params=args.task_params)
    data, data_spec = load_data(data_args, args.seed, tokenizer)
    data.save_to_disk(str(output_dir / "data"))
    (output_dir / "data_spec.json").write_text(json.dumps(data_spec, indent=2))
    print(f"data: {', '.join(f'{k} {len(v)}' for k, v in data.items())} ({time.time() - job_start:.0f} s)", flush=True)

    family = family_of(args.task)
    runs = {name: train_one(name, mode, args, family) for name, mode in MODELS.items()}

    print("\n== evaluating on seen and unseen sizes", flush=True)
    eval_start = time.time()
    reports = {name: evaluation_report(run["trainer"].model, data, tokenizer) for name, run in runs.items()}
    logs = {name: read_probe_log(run["output_dir"] / "probe_log.jsonl") for name, run in runs.items()}
    phases = {name: training_phases(records) for name, records in logs.items()}
    plot_complexity(reports, args.train_sizes, output_dir / "complexity.png",
                    title=f"{args.task} {args.task_params}: accuracy and allocated depth per complexity")
    plot_training_dynamics(logs, output_dir / "training_dynamics.png")
    eval_seconds = time.time() - eval_start

    table = format_table(reports)
    summary = {
        "arguments": asdict(args),
        "data_spec": data_spec,
        "models": {name: {"steps": run["steps"], "train_seconds": run["seconds"], "output_dir": str(run["output_dir"]),
                          "phases": phases[name]} for name, run in runs.items()},
        "reports": reports,
        "eval_seconds": eval_seconds,
        "total_seconds": time.time() - job_start,
        "table": table,
    }
    (output_dir / "report.json").write_text(json.dumps(summary, indent=2))
    print(f"\nTask {args.task} {args.task_params}, trained on complexity {args.train_sizes}, unseen {args.extrapolation_sizes}.")
    print("tok.acc: teacher-forced answer-token accuracy; gen.acc: greedy generated answer scored by the task;")
    print("depth: mean iterations at the positions that predict answer tokens (max_depth in the config).\n")
    print(table)
    for name, run in runs.items():
        p = phases[name]
        print(f"{name}: {run['steps']} steps in {run['seconds']:.0f} s; seen-size accuracy {p.get('final_accuracy', float('nan')):.2f}, "
              f"answer depth {p.get('depth_when_learned', float('nan')):.2f} when learned (step {p.get('learned_step')}) "
              f"-> {p.get('final_depth', float('nan')):.2f} at the end; peak rho(depth, c) on the probe during training "
              f"{p.get('peak_depth_spearman', float('nan')):.2f} (step {p.get('peak_depth_spearman_step')})")
    print(f"\nwrote {output_dir / 'report.json'}, {output_dir / 'complexity.png'}, {output_dir / 'training_dynamics.png'}")
    print(f"total wall time {summary['total_seconds']:.0f} s (evaluation {eval_seconds:.0f} s)")
    return summary


if __name__ == "__main__":
    main()
