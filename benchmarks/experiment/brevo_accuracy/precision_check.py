"""The shipped BREVO models on more test prompts: 2,000 distinct prompts per seen size from the test bucket.

    python benchmarks/experiment/brevo_accuracy/precision_check.py --out DIR [--per_size 2000]

Builds the recipe's data (`hub_configs/anira-e-brevo/recipe.json`: task seed, sizes, held-out fraction) with
`--per_size` test prompts per seen size in place of 300, and a token training split (the test bucket does not
depend on it: prompts are assigned to buckets by a hash of their text), saves it to DIR/data, and prints the check
that the 300 prompts of the models' reports are among the new ones. Then evaluate each model on it:

    python examples/evaluate.py --models hub_configs/anira-{e,o,fixed}-brevo --dataset_path DIR/data \\
        --splits test_seen --output_dir DIR
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from anira_study.evaluation import load_eval_data  # noqa: E402
from anira_tasks.dataset import TaskSpec, build_dataset_dict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--per_size", type=int, default=2000)
    args = parser.parse_args()
    out = Path(args.out)
    spec = json.loads((ROOT / "hub_configs" / "anira-e-brevo" / "report.json").read_text())
    train_args = json.loads((ROOT / "hub_configs" / "anira-e-brevo" / "recipe.json").read_text())["train_args"]
    value = lambda flag: train_args[train_args.index(flag) + 1]  # noqa: E731
    sizes = [int(s) for s in spec["train_sizes"]]
    big = TaskSpec(task="brevo", train_sizes=sizes, extrapolation_sizes=[], num_train=2000, num_validation=64,
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


if __name__ == "__main__":
    main()
