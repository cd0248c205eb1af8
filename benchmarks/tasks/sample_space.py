"""What the study's new tasks offer before any training: MANO's prompt space and how the splits cut it, CLRS's
sequence lengths and serial depth per size. No model is trained; it runs in about a minute on one core.

    python benchmarks/tasks/sample_space.py [--moduli 23 11 7 5] [--num_train 100000]

MANO, per modulus and l = 1..6: the distinct prompts (Catalan(l) tree shapes x 3^l operators x m^(l+1) leaves;
prefix notation is unambiguous, and the length marker `<l=..>` is a function of l, so the count is the same
with the marker and with `<q>`); how many of them the prompt-hash buckets give validation and test (counted
exactly where the space is at most `--enumerate` prompts, else 5 % each, the bucket share); and, for a training
split of `--num_train` rows over l = 1..4 (task_seed 0, as the study builds it), how many distinct l = 1
prompts it holds, and how many of the held-out l = 1 prompts (validation and test) occur as a subexpression
`op a b` of an l = 2 training row (the only way training shows their value's inputs together).

CLRS, per algorithm and n: tokens of prompt + answer (+ <eos>), and the serial depth the answer needs on the
task's random graphs (mean over 200 samples): topological sort, the DFS recursion depth (deepest `dfs_depth` + 1);
dfs, the depth of the DFS forest; bfs, the BFS levels (the deepest parent chain).
"""

import argparse
import itertools
import math
from collections import Counter

from anira_tasks import TaskSpec, generate_sample
from anira_tasks.dataset import TRAIN, VALIDATION, _generate_planned, _seed_stream, prompt_bucket
from anira_tasks.mano import OPERATORS, QUESTION_MARKER, length_marker

HELDOUT = TaskSpec("mano", [1]).heldout_fraction
CLRS_SIZES = (3, 4, 5, 6, 7, 8, 10, 12, 16)


def mano_prompt_count(l: int, modulus: int) -> int:
    return math.comb(2 * l, l) // (l + 1) * len(OPERATORS) ** l * modulus ** (l + 1)


def _prefix_trees(l: int, modulus: int):
    """Every prefix expression (a list of symbols) with exactly l operators."""
    if l == 0:
        yield from ([str(v)] for v in range(modulus))
        return
    for left in range(l):
        for operator in OPERATORS:
            for a in _prefix_trees(left, modulus):
                for b in _prefix_trees(l - 1 - left, modulus):
                    yield [operator, *a, *b]


def mano_buckets(l: int, modulus: int, marker: bool, limit: int) -> tuple[int, int, bool]:
    """(validation prompts, test prompts, counted exactly) at size l."""
    total = mano_prompt_count(l, modulus)
    if total > limit:
        return round(total * HELDOUT / 2), round(total * HELDOUT / 2), False
    head = ["<bos>", length_marker(l) if marker else QUESTION_MARKER]
    counts = Counter(prompt_bucket(" ".join(head + tree + ["="]), HELDOUT) for tree in _prefix_trees(l, modulus))
    return counts[VALIDATION], counts["test"], True


def mano_training(modulus: int, marker: bool, num_train: int) -> dict:
    """The study's training split over l = 1..4 (plan and bucket rule of `build_dataset_dict`, no tokenization)."""
    spec = TaskSpec("mano", [1, 2, 3, 4], num_train=num_train, task_params={"modulus": modulus, "use_length_marker": marker})
    stream = _seed_stream(spec, TRAIN)
    plan = [(size, stream.getrandbits(61) << 1) for size in stream.choices([1, 2, 3, 4], k=num_train)]
    rows = _generate_planned("mano", spec.task_params, HELDOUT, plan)
    l1 = {s.prompt for s in rows if s.complexity == 1}
    inner = set()  # `op a b` subexpressions of l = 2 training rows
    for s in rows:
        if s.complexity == 2:
            symbols = s.prompt.split()[2:-1]
            for i in range(len(symbols) - 2):
                if symbols[i] in OPERATORS and symbols[i + 1].isdigit() and symbols[i + 2].isdigit():
                    inner.add(tuple(symbols[i : i + 3]))
    head = ["<bos>", length_marker(1) if marker else QUESTION_MARKER]
    heldout = [(o, str(a), str(b)) for o, a, b in itertools.product(OPERATORS, range(modulus), range(modulus))
               if prompt_bucket(" ".join(head + [o, str(a), str(b), "="]), HELDOUT) != TRAIN]
    return {"l1_rows": sum(s.complexity == 1 for s in rows), "l1_distinct": len(l1),
            "heldout_l1": len(heldout), "heldout_l1_inside_l2": sum(entry in inner for entry in heldout)}


def clrs_row(algorithm: str, n: int, samples: int = 200) -> tuple[float, float]:
    """(mean tokens of prompt + answer + <eos>, mean serial depth or nan)."""
    tokens, depths = [], []
    for seed in range(samples):
        s = generate_sample(algorithm, n, seed)
        tokens.append(len(s.prompt.split()) + len(s.answer.split()) + 1)
        if algorithm == "topological_sort":
            depths.append(max(d for d in s.annotations["dfs_depth"] if d >= 0) + 1)
        elif algorithm in ("dfs", "bfs"):
            labels = s.prompt.split("nodes : [ ")[1].split(" ]")[0].split()
            index = {label: i for i, label in enumerate(labels)}
            parent = [index[p] for p in s.answer.split()[1:-1]]

            def depth(u: int) -> int:
                d = 0
                while parent[u] != u:
                    u, d = parent[u], d + 1
                return d

            depths.append(max(depth(u) for u in range(n)) + (algorithm == "dfs"))
    return sum(tokens) / samples, (sum(depths) / samples if depths else float("nan"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moduli", type=int, nargs="+", default=[23, 11, 7, 5])
    parser.add_argument("--num_train", type=int, default=100_000)
    parser.add_argument("--enumerate", type=int, default=300_000, help="count buckets exactly up to this many prompts")
    args = parser.parse_args()
    print("MANO distinct prompts per l (the same with the length marker and with `<q>`):\n")
    print("| modulus | " + " | ".join(f"l = {l}" for l in range(1, 7)) + " |\n" + "|---" * 7 + "|")
    for m in args.moduli:
        print(f"| {m} | " + " | ".join(f"{mano_prompt_count(l, m):,}" for l in range(1, 7)) + " |")
    print("\nValidation / test prompts the buckets allow at l = 1, 2, 3 (`<l=..>` marker; `<q>`), counted by hashing "
          f"every prompt (~: over {args.enumerate:,} prompts, 5 % of the space):\n")
    print("| modulus | l = 1 | l = 2 | l = 3 |\n|---|---|---|---|")
    for m in args.moduli:
        cells = []
        for l in (1, 2, 3):
            marker, question = mano_buckets(l, m, True, args.enumerate), mano_buckets(l, m, False, args.enumerate)
            cells.append(f"{marker[0]:,} / {marker[1]:,}; {question[0]:,} / {question[1]:,}" if marker[2] else f"~{marker[0]:,} / ~{marker[1]:,}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print(f"\nMANO training split ({args.num_train:,} rows, l = 1..4 uniform, task_seed 0):\n")
    print("| modulus | marker | l = 1 rows | distinct l = 1 prompts in training | held-out l = 1 prompts | "
          "of them inside an l = 2 training row |\n|---|---|---|---|---|---|")
    for m in args.moduli:
        for marker in (True, False):
            t = mano_training(m, marker, args.num_train)
            print(f"| {m} | {'<l=..>' if marker else '<q>'} | {t['l1_rows']:,} | {t['l1_distinct']} | {t['heldout_l1']} | "
                  f"{t['heldout_l1_inside_l2']} |", flush=True)
    print("\nCLRS tokens per sample (prompt + answer + <eos>) / serial depth, mean over 200 samples:\n")
    print("| algorithm | " + " | ".join(f"n = {n}" for n in CLRS_SIZES) + " |\n" + "|---" * (len(CLRS_SIZES) + 1) + "|")
    for algorithm in ("topological_sort", "dfs", "bfs", "insertion_sort"):
        cells = []
        for n in CLRS_SIZES:
            tokens, depth = clrs_row(algorithm, n)
            cells.append(f"{tokens:.0f}" + ("" if depth != depth else f" / {depth:.1f}"))
        print(f"| {algorithm} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
