"""ANIRA-O's depth in the first steps of a run: each checkpoint's weights at every uniform depth, against its own halting.

    python experiments/o_depth_collapse/measure.py --run TRAINING_FOLDER --data FINISHED_RUN [--sizes 3 4] [--json OUT]

For every `checkpoint-N` of a training folder: the validation rows of the given sizes (the split that `--data`, a
finished run of the same data, names in its anira_data.json; the first `per_size` of each size), teacher forced, the answer tokens' mean cross-entropy and token accuracy when every token
runs exactly t iterations (the checkpoint loaded with `depth_mode="fixed"`, t = 1..max_depth), and with the model's
own halting (its answer positions' mean depth). Also the share of answer tokens whose cross-entropy a second
iteration raises (t = 2 against t = 1): where that share is above one half, a straight-through halting gradient,
which compares iteration d with d + 1, pushes most tokens to halt after one.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import modeling_anira  # noqa: E402,F401
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from anira_study.data import AnswerCollator  # noqa: E402
from anira_study.evaluation import load_eval_data  # noqa: E402


def answer_losses(model, rows, tokenizer, max_depth=None):
    """Per answer token (rows in order): cross-entropy, correct, and the depth at its position."""
    batch = AnswerCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        out = model(**batch, use_cache=False, **({} if max_depth is None else {"max_depth": max_depth}))
    losses, correct, depths = [], [], []
    for i, row in enumerate(rows):
        first, length = row["answer_start"] - 1, row["answer_length"]
        logits = out.logits[i, first:first + length]
        targets = batch["input_ids"][i, first + 1:first + 1 + length]
        losses += F.cross_entropy(logits.float(), targets, reduction="none").tolist()
        correct += (logits.argmax(-1) == targets).tolist()
        depths += out.depths[i, first:first + length].tolist()
    return losses, correct, depths


def measure(checkpoint: Path, rows, tokenizer) -> dict:
    fixed = AutoModelForCausalLM.from_pretrained(checkpoint, depth_mode="fixed").eval()
    uniform = {t: answer_losses(fixed, rows, tokenizer, max_depth=t) for t in range(1, fixed.config.max_depth + 1)}
    own = answer_losses(AutoModelForCausalLM.from_pretrained(checkpoint).eval(), rows, tokenizer)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "step": int(checkpoint.name.split("-")[1]),
        "uniform_loss": {t: mean(u[0]) for t, u in uniform.items()},
        "uniform_accuracy": {t: mean(u[1]) for t, u in uniform.items()},
        "own_loss": mean(own[0]), "own_accuracy": mean(own[1]), "own_depth": mean(own[2]),
        "second_iteration_hurts": mean([b > a for a, b in zip(uniform[1][0], uniform[2][0])]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a finished run folder of the same data (anira_data.json)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--per_size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, _ = load_eval_data(args.data)
    validation = data["validation"].to_list()
    rows = [r for size in args.sizes for r in [r for r in validation if r["complexity"] == size][:args.per_size]]
    checkpoints = sorted(args.run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    tokenizer = AutoTokenizer.from_pretrained(checkpoints[0])
    results = [measure(c, rows, tokenizer) for c in checkpoints]
    depths = sorted(results[0]["uniform_loss"])
    print(f"{args.run.name}: validation n = {args.sizes}, {len(rows)} prompts; answer-token cross-entropy")
    print("| step | " + " | ".join(f"t = {t}" for t in depths) + " | own halting (depth) | 2nd iteration raises the loss |")
    print("|---" * (len(depths) + 3) + "|")
    for r in results:
        print(f"| {r['step']} | " + " | ".join(f"{r['uniform_loss'][t]:.3f}" for t in depths)
              + f" | {r['own_loss']:.3f} ({r['own_depth']:.2f}) | {r['second_iteration_hurts']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"run": args.run.name, "sizes": args.sizes, "prompts": len(rows), "checkpoints": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
