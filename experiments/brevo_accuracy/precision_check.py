"""The shipped BREVO models on more test prompts: 2,000 distinct prompts per seen size from the test bucket.

    python experiments/brevo_accuracy/precision_check.py --out DIR [--per_size 2000]

Builds the recipe's data (`hub_configs/anira-e-brevo/recipe.json`: task seed, sizes, held-out fraction) with
`--per_size` test prompts per seen size in place of 300, and a token training split (the test bucket does not
depend on it: prompts are assigned to buckets by a hash of their text), saves it to DIR/data, and prints the check
that the 300 prompts of the models' reports are among the new ones. Then evaluate each model on it:

    python examples/evaluate_models.py --models hub_configs/anira-{e,o,fixed}-brevo --dataset_path DIR/data \\
        --splits test_seen --output_dir DIR

and, for an adaptive model, the shares of its per-token depth variance explained by static vs execution-state
features on those prompts (finding 3; teacher-forced depths at the answer positions, as in the reports), written to
DIR/shares_<name>.json:

    python experiments/brevo_accuracy/precision_check.py --out DIR --shares hub_configs/anira-o-brevo
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from anira_study.analysis import FEATURE_GROUPS, depth_feature_importance  # noqa: E402
from anira_study.evaluation import answer_records, load_eval_data  # noqa: E402
from anira_study.model_cards import format_shares  # noqa: E402
from anira_tasks.dataset import TaskSpec, build_dataset_dict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--per_size", type=int, default=2000)
    parser.add_argument("--unseen", type=int, nargs="*", default=[], help="also build these unseen sizes (the reports: 7 8)")
    parser.add_argument("--shares", help="a model folder: its feature shares on DIR/data's test_seen (built before)")
    parser.add_argument("--with_unseen", action="store_true", help="--shares over test_seen and test_extrapolation, as the reports")
    args = parser.parse_args()
    out = Path(args.out)
    if args.shares:
        return shares(Path(args.shares), out, args.with_unseen)
    spec = json.loads((ROOT / "hub_configs" / "anira-e-brevo" / "report.json").read_text())
    train_args = json.loads((ROOT / "hub_configs" / "anira-e-brevo" / "recipe.json").read_text())["train_args"]
    value = lambda flag: train_args[train_args.index(flag) + 1]  # noqa: E731
    sizes = [int(s) for s in spec["train_sizes"]]
    big = TaskSpec(task="brevo", train_sizes=sizes, extrapolation_sizes=args.unseen, num_train=2000, num_validation=64,
                   num_test_per_size=args.per_size, seed=int(value("--seed")))
    data = build_dataset_dict(big)
    data.save_to_disk(str(out / "data"))
    # the reports' 300 per size, rebuilt as the models' own data spec does
    reported = TaskSpec(task="brevo", train_sizes=sizes, extrapolation_sizes=[], num_train=2000, num_validation=64,
                        num_test_per_size=300, seed=int(value("--seed")))
    small = set(build_dataset_dict(reported)["test_seen"]["prompt"])
    new = data["test_seen"]
    print(f"{len(new)} test prompts ({len(set(new['prompt']))} distinct); the reports' {len(small)} among them: "
          f"{len(small & set(new['prompt']))}")


def shares(model_dir: Path, out: Path, with_unseen: bool = False) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    data, _ = load_eval_data(model_dir, dataset_path=str(out / "data"))
    rows = [row for split in ("test_seen", "test_extrapolation")[:1 + with_unseen] for row in data[split].to_list()]
    records = [{**r, **{k: rows[i][k] for k in rows[i] if isinstance(rows[i][k], list) and k not in ("input_ids", "labels")}}
               for i, r in enumerate(answer_records(model, rows, tokenizer, 64))]
    result = {within: depth_feature_importance(records, FEATURE_GROUPS["brevo"], within_prompt=within) for within in (False, True)}
    (out / f"shares_{model_dir.name}{'_with_unseen' if with_unseen else ''}.json").write_text(json.dumps({str(k): v for k, v in result.items()}, indent=1))
    print(f"{model_dir.name}: {format_shares(result[False])}; within a prompt: {format_shares(result[True])}")


if __name__ == "__main__":
    main()
