"""Evaluate trained ANIRA models per split and per complexity; write a JSON report and figures.

    python examples/evaluate_models.py --models outputs/anira-e-depo outputs/anira-o-depo --output_dir outputs/eval

For each model: teacher-forced per-token and per-answer accuracy, accuracy of the greedily generated
answer (the task's scorer), mean depth at the positions that predict answer tokens, and Spearman's rho
between that depth and complexity, on every test split (seen sizes, interpolation, extrapolation).
The data is rebuilt from the `anira_data.json` that `examples/train.py` saved, or from a `hub_configs/` folder's
`recipe.json` (or `--dataset_path`), so the test samples are the ones held out from training. Writes `report.json`, `complexity.png` and prints
the table. Several models are drawn side by side (name them with `--names`).
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.evaluation import EVAL_SPLITS, cap_per_size, evaluation_report, format_table, load_eval_data
from anira_study.cli import check_model_dir, check_positive, run_script
from anira_study.figures import plot_complexity


@dataclass
class EvaluationArguments:
    models: list[str] = field(metadata={"help": "Folders saved by examples/train.py."})
    names: list[str] = field(default_factory=list, metadata={"help": "Display names (default: folder names)."})
    output_dir: str = field(default="outputs/eval")
    dataset_path: str | None = field(default=None, metadata={"help": "A saved DatasetDict (default: rebuild from anira_data.json or recipe.json)."})
    splits: list[str] = field(default_factory=lambda: list(EVAL_SPLITS))
    batch_size: int = field(default=64)
    generate: bool = field(default=True, metadata={"help": "Also score greedily generated answers."})
    depth_batching: bool = field(default=False, metadata={"help": "Generate the answers with depth-wise batched "
                                                          "decoding (the same answers)."})
    max_per_size: int | None = field(default=None, metadata={"help": "Evaluate at most this many samples per complexity."})
    device: str | None = field(default=None, metadata={"help": "Default: cuda when available, else cpu."})


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses(args=argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = args.names or [Path(m).name for m in args.models]
    if len(names) != len(args.models):
        raise ValueError(f"--names gives {len(names)} names for {len(args.models)} models")
    unknown = [split for split in args.splits if split not in EVAL_SPLITS]
    if unknown:
        raise ValueError(f"--splits {unknown}: the evaluation splits are {list(EVAL_SPLITS)}")
    check_positive("batch_size", args.batch_size)
    if args.max_per_size is not None:
        check_positive("max_per_size", args.max_per_size)
    for model_dir in args.models:
        check_model_dir(model_dir)
        if args.dataset_path is None and not any((Path(model_dir) / name).exists() for name in ("anira_data.json", "recipe.json")):
            raise ValueError(f"{model_dir} has neither anira_data.json nor recipe.json: pass --dataset_path, or a folder "
                             "examples/train.py saved or hub_configs/ holds")
    reports, train_sizes = {}, []
    for name, model_dir in zip(names, args.models):
        data, train_sizes = load_eval_data(model_dir, args.dataset_path)
        data = cap_per_size(data, args.max_per_size)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
        reports[name] = evaluation_report(model, data, tokenizer, args.splits, args.batch_size, args.generate,
                                          depth_batching=args.depth_batching)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = format_table(reports)
    (output_dir / "report.json").write_text(json.dumps({"models": dict(zip(names, args.models)), "reports": reports,
                                                        "train_sizes": train_sizes, "table": table}, indent=2))
    plot_complexity(reports, train_sizes, output_dir / "complexity.png")
    print(table)
    print(f"wrote {output_dir / 'report.json'} and {output_dir / 'complexity.png'}")
    return reports


if __name__ == "__main__":
    run_script(lambda: main(sys.argv[1:]), "evaluate_models.py")
