"""Does a trained MANO model fit its training rows, per number of operations l, or fail only on held-out prompts?

    python experiments/mano_fit/fit.py FOLDER [FOLDER ...] [--rows 256]

FOLDER is a finished training folder (its `anira_data.json` says which data it trained on). Per seen l, the greedy
answer's exact match, scored as the search scores it, on up to `--rows` training rows drawn with a
fixed seed and on the validation split (64 prompts per l in the search's probe; here all of them); beside it chance
(1 / modulus) and the share of the training rows' answers that are the most frequent answer (a model that always says
it scores that). Reads the training and validation splits, never a test split.
"""

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def fit(folder: Path, rows_per_size: int, seed: int = 0) -> dict:
    """Per seen l: exact match on `rows_per_size` drawn training rows and on the validation prompts, scored as the
    search scores (`anira_study.evaluation.generated_correct`: greedy generation, the task's scorer)."""
    from transformers import AutoModelForCausalLM

    import modeling_anira  # noqa: F401
    from anira_study.evaluation import generated_correct
    from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
    from anira_tasks.dataset import VALIDATION
    from anira_tasks.mano import DEFAULT_MODULUS

    spec = TaskSpec(**json.loads((folder / "anira_data.json").read_text()))
    data = build_dataset_dict(spec, num_proc=1)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer("mano")
    modulus = spec.task_params.get("modulus", DEFAULT_MODULUS)
    train = data["train"].to_list()
    validation = data[VALIDATION].to_list()
    rng = random.Random(seed)
    result = {"folder": str(folder), "modulus": modulus, "sizes": {}}
    for size in spec.train_sizes:
        seen = [row for row in train if row["complexity"] == size]
        drawn = rng.sample(seen, min(rows_per_size, len(seen)))
        held = [row for row in validation if row["complexity"] == size]
        answers = Counter(row["input_ids"][row["answer_start"]] for row in seen)
        train_hits, held_hits = generated_correct(model, drawn, tokenizer), generated_correct(model, held, tokenizer)
        result["sizes"][size] = {
            "train_rows": len(seen), "train_exact": sum(train_hits) / len(train_hits), "train_drawn": len(drawn),
            "validation_exact": sum(held_hits) / len(held_hits) if held_hits else None, "validation_prompts": len(held),
            "majority_answer_share": answers.most_common(1)[0][1] / len(seen)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--rows", type=int, default=256, help="training rows drawn per l")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = []
    for folder in args.folders:
        r = fit(folder, args.rows)
        results.append(r)
        print(f"{folder} (modulus {r['modulus']}, chance {1 / r['modulus']:.3f})")
        print("| l | training rows | exact on training rows | exact on validation | majority answer's share |")
        print("|---|---|---|---|---|")
        for size, s in r["sizes"].items():
            validation = "-" if s["validation_exact"] is None else f"{s['validation_exact']:.2f} ({s['validation_prompts']})"
            print(f"| {size} | {s['train_rows']} | {s['train_exact']:.2f} ({s['train_drawn']}) | {validation} | "
                  f"{s['majority_answer_share']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
