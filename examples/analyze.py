"""Where does the compute go? Training dynamics, depth feature importance, and needed versus allocated depth.

    # training dynamics from the probe logs train.py wrote (learning phase, then compute reduction)
    python examples/analyze.py dynamics --models outputs/anira-e-brevo outputs/anira-o-brevo --output_dir outputs/analysis

    # per-token depth regressed on static vs algorithmic-state features (BREVO, topological_sort)
    python examples/analyze.py importance --models outputs/anira-e-brevo outputs/anira-o-brevo --output_dir outputs/analysis

`importance` evaluates each model on its held-out test splits, then regresses the depth at each position
that predicts an answer token on one-hot encoded features in two groups: static structure (graph size,
node in/out degree, node depth in the DAG) and the algorithm's execution state (frontier size, newly enabled
nodes, DFS stack depth). It reports each group's share of explained variance (Shapley split of R^2) per
model, with 95 % bootstrap intervals over items; and the same for the variation inside a prompt (each
prompt's mean depth and features removed, so graph size explains nothing there), under "inside_prompts".

    # accuracy when every token runs exactly t iterations, each prompt's oracle depth, and the adaptive gain
    python examples/analyze.py depth-need --models hub_configs/anira-o-depo --num_prompts 100 --output_dir outputs/analysis

`depth-need` runs the same weights at every uniform depth t (the checkpoint loaded in fixed mode) on the first
`num_prompts` test prompts per size (`--sizes`, default all) of the model's own evaluation (rebuilt from its
`anira_data.json` or `recipe.json`, or `--dataset_path`), and compares each prompt's oracle depth (the smallest t
that answers it) with the depth the adaptive model gives it (definitions: `anira_study.depth_need`). Writes
`depth_need.json` and prints a markdown table.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.analysis import FEATURE_GROUPS, depth_feature_importance, read_probe_log, training_phases
from anira_study.evaluation import EVAL_SPLITS, cap_per_size, evaluation_report, load_eval_data
from anira_study.cli import check_model_dir, check_positive, run_script
from anira_study.depth_need import depth_need_for_folder
from anira_study.figures import plot_training_dynamics
from anira_study.model_cards import format_shares


@dataclass
class AnalysisArguments:
    models: list[str] = field(metadata={"help": "Folders saved by examples/train.py."})
    names: list[str] = field(default_factory=list)
    output_dir: str = field(default="outputs/analysis")
    dataset_path: str | None = field(default=None)
    max_per_size: int | None = field(default=200)
    batch_size: int = field(default=64)
    num_prompts: int = field(default=100, metadata={"help": "depth-need: test prompts per size (the first of the model's test splits)."})
    sizes: list[int] = field(default_factory=list, metadata={"help": "depth-need: the sizes to read (default: every test size)."})
    resamples: int = field(default=1000, metadata={"help": "depth-need: bootstrap resamples of the prompts."})


def dynamics(args: AnalysisArguments, names: list[str]) -> dict:
    logs = {name: read_probe_log(Path(model) / "probe_log.jsonl") for name, model in zip(names, args.models)}
    path = plot_training_dynamics(logs, Path(args.output_dir) / "training_dynamics.png")
    phases = {name: training_phases(records) for name, records in logs.items()}
    for name, p in phases.items():
        print(f"{name}: learned (90% of final seen-size accuracy) at step {p.get('learned_step')} with answer depth "
              f"{p.get('depth_when_learned', float('nan')):.2f}; final depth {p.get('final_depth', float('nan')):.2f}, "
              f"final accuracy {p.get('final_accuracy', float('nan')):.2f}")
    print(f"wrote {path}")
    return phases


def importance(args: AnalysisArguments, names: list[str]) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {}
    for name, model_dir in zip(names, args.models):
        data, _ = load_eval_data(model_dir, args.dataset_path)
        data = cap_per_size(data, args.max_per_size)
        task = data["train"][0]["task"]
        if task not in FEATURE_GROUPS:
            raise ValueError(f"feature importance needs per-token algorithmic annotations: tasks {sorted(FEATURE_GROUPS)}, got {task!r}")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
        report = evaluation_report(model, data, tokenizer, EVAL_SPLITS, args.batch_size, generate=False, keep_records=True)
        records = [r for split in EVAL_SPLITS if split in report for r in report[split]["records"]]
        result = results[name] = depth_feature_importance(records, FEATURE_GROUPS[task])
        result["inside_prompts"] = depth_feature_importance(records, FEATURE_GROUPS[task], within_prompt=True)
        print(f"{name} ({task}): share of depth variance explained: {format_shares(result)}; "
              f"within a prompt: {format_shares(result['inside_prompts'])}")
    path = Path(args.output_dir) / "feature_importance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


def depth_need(args: AnalysisArguments, names: list[str]) -> dict:
    check_positive("num_prompts", args.num_prompts)
    check_positive("batch_size", args.batch_size)
    check_positive("resamples", args.resamples)
    results = {}
    for name, model_dir in zip(names, args.models):
        report = depth_need_for_folder(model_dir, args.num_prompts, args.sizes, args.batch_size, args.resamples,
                                       args.dataset_path)
        results[name] = report
        print(f"\n{name} ({report['depth_mode']}), {report['overall']['prompts']} test prompts\n\n{report['table']}")
    path = Path(args.output_dir) / "depth_need.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


COMMANDS = {"dynamics": dynamics, "importance": importance, "depth-need": depth_need}


USAGE = f"usage: analyze.py {{{','.join(COMMANDS)}}} --models DIR [DIR ...] [--output_dir DIR]"


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):  # `analyze.py COMMAND --help` lists the options
        print(f"{USAGE}\n{__doc__}")
        raise SystemExit(0)
    if not argv or argv[0] not in COMMANDS:
        given = f"got {argv[0]!r}" if argv else "none given"
        raise ValueError(f"the first argument must be a command, one of {list(COMMANDS)} ({given}; --help for more)")
    (args,) = HfArgumentParser(AnalysisArguments).parse_args_into_dataclasses(args=argv[1:])
    names = args.names or [Path(m).name for m in args.models]
    if len(names) != len(args.models):
        raise ValueError(f"--names gives {len(names)} names for {len(args.models)} models")
    for model_dir in args.models:
        check_model_dir(model_dir)
    return COMMANDS[argv[0]](args, names)


if __name__ == "__main__":
    run_script(main, "analyze.py")
