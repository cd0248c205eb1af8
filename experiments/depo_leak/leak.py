"""Does a DEPO prompt give its answer away? Two measurements.

    python experiments/depo_leak/leak.py generator          # from the task generator alone: no model, no split
    python experiments/depo_leak/leak.py model FOLDER       # a trained folder on validation prompts of its data

`generator`: for the study's DEPO data (v1 and v6: 8 nodes, six queries sharing k, the first five solved in the
prompt; v7: one query), per k, on 2,000 generated samples, the answer candidates left by what the solved queries
show: succ^k is a permutation, so the answers already given and the query's own start are ruled out; and where
2k = 0 mod n (k = 4 on 8 nodes) succ^k pairs the nodes, so a solved query (answer -> start) names the answer, and the
one node no solved query mentions is the answer when its pair was not queried.

`model`: the folder's greedy answers to validation prompts of its own data (its `anira_data.json` spec; 64 per seen
k), or with `--single_query` of the same task with one query per prompt (nothing solved before it), per k: exact match, the share of its answers among the candidates the solved queries leave (as above), and
where each answer lies on the cycle (how many hops forward from the start), to tell a shortcut from hops.
"""

import argparse
import json
from collections import Counter

from anira_tasks import generate_sample

V1_PARAMS = {"num_nodes": 8, "num_queries": 6, "supervise_all_queries": True, "edge_format": "token", "hop_format": "unary"}
V7_PARAMS = {"num_nodes": 8, "num_queries": 1, "edge_format": "token", "hop_format": "unary"}


def parse(prompt: str) -> tuple[dict[str, str], list[tuple[str, str]], str]:
    """(edges a -> succ(a), the solved queries (start, answer), the asked query's start) of a DEPO prompt."""
    words = prompt.split()
    edges = dict(w.split(">") for w in words if w.startswith("v") and ">" in w)
    asks = [j for j, w in enumerate(words) if w == "<ans>"]
    return edges, [(words[j - 1], words[j + 1]) for j in asks[:-1]], words[asks[-1] - 1]


def candidates(edges: dict[str, str], solved: list[tuple[str, str]], start: str, hops: int) -> set[str]:
    """The nodes the answer can be, given only what the solved queries show (no hop taken)."""
    nodes = set(edges)
    left = nodes - {answer for _, answer in solved} - {start}
    if (2 * hops) % len(nodes) == 0:  # an involution: succ^k(succ^k(a)) = a
        named = {s for s, answer in solved if answer == start}
        if named:
            return named
        left -= {s for s, _ in solved}  # a queried start's pair is its answer, so neither is ours
    return left


def generator(samples: int) -> None:
    for name, params in (("v1 and v6 (six queries sharing k)", V1_PARAMS), ("v7 (one query)", V7_PARAMS)):
        print(f"{name}: {json.dumps(params)}")
        for hops in range(1, 7):
            sizes, right = Counter(), 0
            for seed in range(samples):
                sample = generate_sample("depo", hops, seed=seed, **params)
                edges, solved, start = parse(sample.prompt)
                left = candidates(edges, solved, start, hops)
                assert sample.answer.split()[0] in left
                sizes[len(left)] += 1
                right += 1 / len(left)
            print(f"  k = {hops}: candidates left {dict(sorted(sizes.items()))}; a guess among them is right "
                  f"{right / samples:.2f} of the time (no hop taken)")


def model(folder: str, per_size: int, single_query: bool = False) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    import modeling_anira  # noqa: F401  (registers ANIRA with the Auto classes: the folder holds weights, no code)
    from anira_study.evaluation import load_eval_data
    from anira_tasks import load_tokenizer

    torch.set_num_threads(1)
    if single_query:  # the same task with nothing solved in the prompt: validation prompts of a format never trained
        from dataclasses import replace

        from anira_study.evaluation import folder_task_spec
        from anira_tasks import build_dataset_dict

        spec = folder_task_spec(folder)
        params = {**spec.task_params, "num_queries": 1, "supervise_all_queries": False}
        spec = replace(spec, task_params=params, num_train=64, num_validation=per_size)
        data, sizes = build_dataset_dict(spec), list(spec.train_sizes)
    else:
        data, sizes = load_eval_data(folder, num_validation=per_size)
    tokenizer = load_tokenizer("depo")
    net = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    for hops in sizes:
        rows = [r for r in data["validation"] if r["complexity"] == hops]
        where, right, inside = Counter(), 0, 0
        for row in rows:
            out = net.generate(**tokenizer(row["prompt"], return_tensors="pt"), max_new_tokens=1, do_sample=False)
            guess = tokenizer.convert_ids_to_tokens(out[0, -1:].tolist())[0]
            right += guess == row["answer"].split()[0]
            edges, solved, node = parse(row["prompt"])
            inside += guess in candidates(edges, solved, node, hops)
            for forward in range(1, len(edges) + 1):
                node = edges[node]
                if node == guess:
                    break
            where[forward if node == guess else "not a node"] += 1
        print(f"k = {hops}: {len(rows)} validation prompts, exact match {right / len(rows):.2f}, answers among the "
              f"candidates the solved queries leave {inside / len(rows):.2f}; the answer given lies j hops forward from "
              f"the start: {dict(sorted(where.items(), key=str))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generator")
    g.add_argument("--samples", type=int, default=2000)
    m = sub.add_parser("model")
    m.add_argument("folder")
    m.add_argument("--per_size", type=int, default=64)
    m.add_argument("--single_query", action="store_true", help="ask each prompt's last query alone (nothing solved before it)")
    args = parser.parse_args()
    generator(args.samples) if args.what == "generator" else model(args.folder, args.per_size, args.single_query)
