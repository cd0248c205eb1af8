"""Where a BREVO model's greedy answers fail: answer validity by the length of the longest path into the query
node, and whether a wrong answer has the wrong node set (extra nodes that are not ancestors of the query, missing
ancestors, or both) or only a wrong order.

    python experiments/brevo_accuracy/errors.py hub_configs/anira-e-brevo [--per_size 200] [--show 3]

Fresh prompts of sizes 5 and 6 (seeds 10,000,000 and up; a diagnostic, not the test split: the datasets draw
their seeds as random 62-bit numbers, so one of these prompts is a training prompt only by a rare coincidence).
"""

import argparse
from collections import Counter, defaultdict

import torch
from transformers import AutoModelForCausalLM

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_tasks import generate_sample, load_tokenizer, score_answer
from anira_tasks.brevo import parse_prompt


def longest_path_into(edges: list[tuple[str, str]], node: str) -> int:
    parents = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    memo = {}

    def length(x: str) -> int:
        if x not in memo:
            memo[x] = max((length(p) + 1 for p in parents[x]), default=0)
        return memo[x]

    return length(node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--per_size", type=int, default=200)
    parser.add_argument("--show", type=int, default=0, help="also print this many wrong answers at longest path 1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer("brevo")
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    by_path, kinds = defaultdict(lambda: [0, 0]), Counter()
    for size in (5, 6):
        for offset in range(args.per_size):
            sample = generate_sample("brevo", size, seed=10_000_000 + offset)
            ids = tokenizer(sample.prompt, return_tensors="pt", add_special_tokens=False).input_ids
            out = model.generate(ids, max_new_tokens=2 * size, do_sample=False)
            answer = [t for t in tokenizer.decode(out[0, ids.shape[1]:]).split() if t not in ("<eos>", "<pad>")]
            valid = bool(score_answer(sample, answer))
            edges, query = parse_prompt(sample.prompt)
            cell = by_path[size, longest_path_into(edges, query)]
            cell[0], cell[1] = cell[0] + valid, cell[1] + 1
            if not valid and args.show and longest_path_into(edges, query) == 1:
                args.show -= 1
                print(f"{sample.prompt} | an answer: {sample.answer} | the model's: {' '.join(answer)}")
            if not valid:
                extra, missing = set(answer) - set(sample.answer.split()), set(sample.answer.split()) - set(answer)
                if not extra and not missing:
                    kinds["right set, wrong order"] += 1
                else:  # extra nodes only (a superset of the closure), missing ones only, or both
                    kinds["wrong set: " + ("extra and missing nodes" if extra and missing else "extra nodes only" if extra
                                           else "missing nodes only")] += 1
    print(f"{args.model}: valid answers by graph size n and longest path into the query")
    for (size, path), (valid, count) in sorted(by_path.items()):
        print(f"  n = {size}, longest path {path}: {valid / count:.2f} of {count}")
    print("  wrong answers:", dict(kinds))


if __name__ == "__main__":
    main()
