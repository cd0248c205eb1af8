"""DEPO: k-hop lookup on a directed cycle; the knob is the number of hops k.

`<bos> a b c d ... <hop=k> a <ans> succ^k(a) <eos>` (docs/tasks.md). Decisions where it is silent:
- Node symbols `v0` .. `v59` (POOL_SIZE = 60): the n nodes of a sample are a random draw from the
  pool, so 2 <= num_nodes <= 60; the context lists the n edges `a succ(a)` in shuffled order.
- k ranges over 1..MAX_HOPS = 16 (the `<hop=k>` vocabulary); k may exceed n (the walk wraps).
- `num_queries` (default 1) queries per sample, from distinct start nodes, all with the same k.
  Only the last one is the answer: the earlier ones appear solved in the prompt, and they give it away in
  part (succ^k is a permutation, so their answers and the query's start are ruled out; where 2k is a
  multiple of n, succ^k pairs the nodes and they determine it: experiments/depo_leak). One query leaks
  nothing. This keeps the
  answer one contiguous span (`answer_start`, `answer_length`) like every other task. With
  `supervise_all_queries=True` the solved queries' targets also get labels (listed in
  `Sample.prompt_label_positions`), for more training signal per sample; scoring, annotations
  and `answer_start` still refer to the last query.
- `show_solved_answers` (default True, as above). False writes the earlier queries without their answers
  (`... <hop=1> a <ans> <hop=1> b <ans> ...`): nothing in the prompt says where any node goes in k hops, so
  the asked query's answer is as hidden as with one query, while `supervise_all_queries` still labels every
  query (the label of an earlier query sits on the symbol that follows its `<ans>`,
  `Sample.prompt_label_symbols`): one query's information, several queries' training signal per sample.
- Annotations: `hops` (k) and `num_nodes` (n) for the answer symbol.
- `edge_format`: `"pair"` (default, the format above: each edge is two node symbols) or `"token"`
  (each edge is one symbol `a>b`, e.g. `v3>v7`). With pairs, every node appears twice in the edge
  list (as a source and as a target), so even one hop needs the model to tell the two roles apart
  from position (an induction-like circuit that a small model on CPU did not form in 9,400 steps).
  With edge symbols one hop is a single content lookup (find the edge whose source is the current
  node, read its target), so the k hops of a query are k dependent lookups: the complexity knob
  counts sequential steps and nothing else. The price is a vocabulary of EDGE_POOL_SIZE^2 - EDGE_POOL_SIZE
  edge symbols, so this format draws nodes from the first EDGE_POOL_SIZE = 12 node symbols
  (2 <= num_nodes <= 12); every size draws from the same pool, so no size has unseen symbols.
- `hop_format`: `"marker"` (default: one symbol `<hop=k>` per query) or `"unary"` (k copies of `<hop=1>`).
  With markers, a k never trained is a symbol never trained (its embedding keeps its initial value), so
  extrapolation to it tests an untrained input, not reasoning. In unary every k is written with the one
  symbol that training uses, and an unseen k differs from the seen ones only in how many there are.
"""

import random

from .common import BOS, Sample, check_bool, check_int

POOL_SIZE = 60
NODE_SYMBOLS = [f"v{i}" for i in range(POOL_SIZE)]
MIN_NODES = 2
MAX_HOPS = 16
DEFAULT_NUM_NODES = 8
ANSWER = "<ans>"
EDGE_FORMATS = ("pair", "token")
HOP_FORMATS = ("marker", "unary")
EDGE_POOL_SIZE = 12
EDGE_SYMBOLS = [f"{a}>{b}" for a in NODE_SYMBOLS[:EDGE_POOL_SIZE] for b in NODE_SYMBOLS[:EDGE_POOL_SIZE] if a != b]


def hop_marker(hops: int) -> str:
    return f"<hop={hops}>"


def hop_count(hops: int, hop_format: str) -> list[str]:
    """The symbols that state a query's number of hops."""
    return [hop_marker(hops)] if hop_format == "marker" else [hop_marker(1)] * hops


def solved_queries_shown(num_queries: int = 1, show_solved_answers: bool = True, **_) -> bool:
    """Whether a prompt of these parameters shows solved queries before the asked one; sharing its k, they give the
    answer away in part (the module's docstring, `num_queries`)."""
    return num_queries > 1 and show_solved_answers


def check_params(complexity: int, num_nodes: int = DEFAULT_NUM_NODES, num_queries: int = 1, supervise_all_queries: bool = False,
                 edge_format: str = "pair", hop_format: str = "marker", show_solved_answers: bool = True) -> None:
    check_int("hops (complexity)", complexity, 1, MAX_HOPS)
    check_int("num_nodes", num_nodes, MIN_NODES)
    if edge_format not in EDGE_FORMATS:
        raise ValueError(f"edge_format must be one of {EDGE_FORMATS}, got {edge_format!r}")
    if hop_format not in HOP_FORMATS:
        raise ValueError(f"hop_format must be one of {HOP_FORMATS}, got {hop_format!r}")
    pool = EDGE_POOL_SIZE if edge_format == "token" else POOL_SIZE
    if num_nodes > pool:
        raise ValueError(f"num_nodes = {num_nodes} exceeds the DEPO node pool of {pool} symbols (edge_format {edge_format!r})")
    check_int("num_queries", num_queries, 1, num_nodes)
    check_bool("supervise_all_queries", supervise_all_queries)
    check_bool("show_solved_answers", show_solved_answers)


def generate(complexity: int, seed: int, num_nodes: int = DEFAULT_NUM_NODES, num_queries: int = 1, supervise_all_queries: bool = False,
             edge_format: str = "pair", hop_format: str = "marker", show_solved_answers: bool = True) -> Sample:
    check_params(complexity, num_nodes, num_queries, supervise_all_queries, edge_format, hop_format, show_solved_answers)
    rng = random.Random(seed)
    hops = complexity
    pool = NODE_SYMBOLS[:EDGE_POOL_SIZE] if edge_format == "token" else NODE_SYMBOLS
    cycle = rng.sample(pool, num_nodes)  # cycle[i] -> cycle[i + 1 mod n]
    edges = [(cycle[i], cycle[(i + 1) % num_nodes]) for i in range(num_nodes)]
    rng.shuffle(edges)
    starts = rng.sample(range(num_nodes), num_queries)
    if edge_format == "token":
        prompt = [BOS] + [f"{a}>{b}" for a, b in edges]
    else:
        prompt = [BOS] + [s for edge in edges for s in edge]
    solved_targets, hidden_answers = [], []
    for start in starts[:-1]:
        prompt += [*hop_count(hops, hop_format), cycle[start], ANSWER]
        solved_targets.append(len(prompt))  # the symbol after `<ans>`: the answer, or where it is hidden the next query's
        target = cycle[(start + hops) % num_nodes]
        (prompt if show_solved_answers else hidden_answers).append(target)
    prompt += [*hop_count(hops, hop_format), cycle[starts[-1]], ANSWER]
    return Sample(
        task="depo",
        complexity=complexity,
        seed=seed,
        prompt=" ".join(prompt),
        answer=cycle[(starts[-1] + hops) % num_nodes],
        annotations={"hops": [hops], "num_nodes": [num_nodes]},
        prompt_label_positions=solved_targets if supervise_all_queries else [],
        prompt_label_symbols=hidden_answers if supervise_all_queries else [],
    )


def vocabulary() -> list[str]:
    return [hop_marker(k) for k in range(1, MAX_HOPS + 1)] + [ANSWER] + NODE_SYMBOLS + EDGE_SYMBOLS
