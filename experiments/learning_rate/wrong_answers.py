"""Where a trained DEPO model's answers land on the cycle: per seen k, how many hops from the start each greedy answer is.

    python experiments/learning_rate/wrong_answers.py FOLDER [FOLDER ...]

FOLDER is a finished training folder (its `anira_data.json` says which data it trained on). Reads the validation split
only (64 prompts per seen k). An answer d hops from the start is right when d = k; d = k - 1 or k + 1 is a miscount.
"""

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def hops_to(prompt: str, answer: str) -> int | None:
    """The d with succ^d(start) == answer on the prompt's cycle (start: the asked query's), None for a non-node."""
    symbols = prompt.split()
    successor = dict(s.split(">") for s in symbols if ">" in s)
    node = symbols[-2]
    for d in range(len(successor)):
        if node == answer:
            return d
        node = successor[node]
    return None


def landing(folder: Path) -> dict[int, Counter]:
    """Per seen k, how many validation answers land d hops from the start (the first answer token: greedy, as
    `generate()` gives it)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    import modeling_anira  # noqa: F401
    from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
    from anira_tasks.dataset import VALIDATION

    spec = TaskSpec(**json.loads((folder / "anira_data.json").read_text()))
    rows = build_dataset_dict(replace(spec, num_train=1), num_proc=1)[VALIDATION].to_list()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer("depo")
    counts: dict[int, Counter] = {}
    for row in rows:
        prompt = torch.tensor([row["input_ids"][:row["answer_start"]]])
        with torch.no_grad():
            answer = tokenizer.convert_ids_to_tokens(int(model(input_ids=prompt).logits[0, -1].argmax()))
        counts.setdefault(row["complexity"], Counter())[hops_to(row["prompt"], answer)] += 1
    return counts


def main() -> None:
    import torch

    torch.set_num_threads(1)
    for folder in map(Path, sys.argv[1:]):
        print(folder)
        for k, counter in sorted(landing(folder).items()):
            total = sum(counter.values())
            print(f"  k = {k}: " + ", ".join(f"{d} hops {n / total:.2f}" for d, n in sorted(counter.items(), key=lambda x: (x[0] is None, x[0]))))


if __name__ == "__main__":
    main()
