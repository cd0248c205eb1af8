"""Where does the compute go? Training dynamics and depth feature importance of trained ANIRA models.

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
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

# examples/evaluate.py would shadow the `evaluate` library for the scripts of this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser  # noqa: E402

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from anira_study.analysis import FEATURE_GROUPS, depth_feature_importance, read_probe_log, training_phases  # noqa: E402
from anira_study.evaluation import EVAL_SPLITS, cap_per_size, evaluation_report, load_eval_data  # noqa: E402
from anira_study.cli import check_model_dir, run_script  # noqa: E402
from anira_study.figures import plot_training_dynamics  # noqa: E402
from anira_study.model_cards import format_shares  # noqa: E402


@dataclass
class AnalysisArguments:
    models: list[str] = field(metadata={"help": "Folders saved by examples/train.py."})
    names: list[str] = field(default_factory=list)
    output_dir: str = field(default="outputs/analysis")
    dataset_path: str | None = field(default=None)
    max_per_size: int | None = field(default=200)
    batch_size: int = field(default=64)


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


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("dynamics", "importance"):
        raise SystemExit("usage: analyze.py {dynamics,importance} --models DIR [DIR ...] [--output_dir DIR]")
    (args,) = HfArgumentParser(AnalysisArguments).parse_args_into_dataclasses(args=argv[1:])
    names = args.names or [Path(m).name for m in args.models]
    for model_dir in args.models:
        check_model_dir(model_dir)
    return (dynamics if argv[0] == "dynamics" else importance)(args, names)


if __name__ == "__main__":
    run_script(main, "analyze.py")
