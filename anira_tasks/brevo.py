"""BREVO: the dependency closure of a query node in topological order; the knob is graph size n.

`<bos> p1 c1 p2 c2 ... <query> q <ans> a1 a2 ... q <eos>` (docs/tasks.md). Decisions where it is silent:
- Node symbols `v0` .. `v59`: one pool of POOL_SIZE = 60 for every n, so 3 <= n <= 60; the n
  symbols of a sample are a random draw from the pool, so a symbol says nothing about its place.
- The edge list holds every edge of the DAG, each as `parent child`, in shuffled order. The
  prompt lists edges only, so a node without an edge would be invisible while `n` (complexity,
  `num_nodes`) counts it. docs/tasks.md's recipe leaves one in about 2 % of its DAGs (a root that no
  later node picks as a parent: 2.5 % at n = 5, 0.4-1 % at n = 8-16, 5 % at n = 60). Decision: keep
  the recipe and redraw the whole DAG until every node has an edge (`random_dag_without_isolated_nodes`),
  i.e. sample the recipe's distribution conditioned on every node appearing in the prompt. The
  redraw continues the same random stream, so every seed whose first DAG already had no isolated
  node gives exactly the sample it gave before; n counts exactly the nodes the prompt shows.
- Annotations per answer symbol a_t (t = 0 .. len-1, the query is the last one):
  `frontier_size` (nodes that were valid choices at step t, a_t among them), `newly_enabled`
  (how many of those became valid through the emission of a_{t-1}; at t = 0 every valid node
  counts as newly enabled), `node_depth` (longest path from a parentless node in the whole DAG),
  `in_degree` / `out_degree` (in the whole DAG), `num_nodes` (n) and `step` (t).
"""

import random
from collections import defaultdict

from .common import BOS, Sample, check_int

POOL_SIZE = 60
NODE_SYMBOLS = [f"v{i}" for i in range(POOL_SIZE)]
MIN_NODES = 3
MAX_PARENTS = 4
MAX_CHILDREN = 4
QUERY, ANSWER = "<query>", "<ans>"


def draw(rand, items: list, k: int) -> list:
    """k distinct items in random order (partial Fisher-Yates).

    `rand` is a bound `Random.random`: int(rand() * m) is about twice as fast as `randrange(m)`
    (bias below 2**-40 for m <= 60), and generation is the hot path of a 100,000-sample split.
    """
    items = list(items)
    for j in range(k):
        i = j + int(rand() * (len(items) - j))
        items[j], items[i] = items[i], items[j]
    return items[:k]


def random_dag(rand, num_nodes: int) -> list[list[int]]:
    """parents[v] for a DAG whose node order 0..n-1 is a topological order (docs/tasks.md's recipe)."""
    num_roots = 1 + int(rand() * ((num_nodes - 1) // 4 + 1))
    parents: list[list[int]] = [[] for _ in range(num_nodes)]
    open_parents = list(range(num_roots))  # earlier nodes with fewer than MAX_CHILDREN children
    num_children = [0] * num_nodes
    for node in range(num_roots, num_nodes):
        # Never empty: the previous node is open (it cannot have children yet).
        num_open = len(open_parents)
        num_chosen = 1 + int(rand() * min(num_open, MAX_PARENTS))
        if num_chosen == num_open:
            chosen = list(open_parents)
        else:  # a few distinct indices by rejection: cheaper than shuffling the candidates
            picked = set()
            while len(picked) < num_chosen:
                picked.add(int(rand() * num_open))
            chosen = [open_parents[i] for i in sorted(picked)]
        parents[node] = chosen
        for parent in chosen:
            num_children[parent] += 1
            if num_children[parent] == MAX_CHILDREN:
                open_parents.remove(parent)
        open_parents.append(node)
    return parents


def random_dag_without_isolated_nodes(rand, num_nodes: int) -> list[list[int]]:
    """random_dag, redrawn until every node has a parent or a child (see the module docstring).

    Only roots can be isolated (every other node has a parent); the redraw rate is at most ~5 %."""
    while True:
        parents = random_dag(rand, num_nodes)
        has_edge = [bool(node_parents) for node_parents in parents]
        for node_parents in parents:
            for parent in node_parents:
                has_edge[parent] = True
        if all(has_edge):
            return parents


def ancestors(parents: dict | list, node) -> set:
    seen, stack = set(), [node]
    while stack:
        for parent in parents[stack.pop()]:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def check_params(complexity: int) -> None:
    check_int("num_nodes (complexity)", complexity, MIN_NODES)
    if complexity > POOL_SIZE:
        raise ValueError(f"num_nodes (complexity) = {complexity} exceeds the BREVO node pool of {POOL_SIZE} symbols")


def generate(complexity: int, seed: int) -> Sample:
    check_params(complexity)
    rand = random.Random(seed).random
    num_nodes = complexity
    parents = random_dag_without_isolated_nodes(rand, num_nodes)
    symbols = draw(rand, NODE_SYMBOLS, num_nodes)
    children: list[list[int]] = [[] for _ in range(num_nodes)]
    depth = [0] * num_nodes  # longest path from a parentless node; node order is topological
    edges = []
    for child in range(num_nodes):
        for parent in parents[child]:
            children[parent].append(child)
            edges.append(f"{symbols[parent]} {symbols[child]}")
            if depth[parent] >= depth[child]:
                depth[child] = depth[parent] + 1
    for j in range(len(edges) - 1):  # Fisher-Yates shuffle of the edge list
        i = j + int(rand() * (len(edges) - j))
        edges[j], edges[i] = edges[i], edges[j]

    query = num_nodes - 1
    closure = ancestors(parents, query) | {query}
    # Randomized Kahn's algorithm on the closure (a node's parents are all in the closure).
    waiting = {v: len(parents[v]) for v in closure}
    frontier = sorted(v for v in closure if waiting[v] == 0)
    order, frontier_sizes, newly_enabled = [], [], []
    num_new = len(frontier)
    while frontier:
        frontier_sizes.append(len(frontier))
        newly_enabled.append(num_new)
        node = frontier.pop(int(rand() * len(frontier)))
        order.append(node)
        num_new = 0
        for child in children[node]:
            if child in waiting:
                waiting[child] -= 1
                if waiting[child] == 0:
                    frontier.append(child)
                    num_new += 1

    return Sample(
        task="brevo",
        complexity=complexity,
        seed=seed,
        prompt=f"{BOS} {' '.join(edges)} {QUERY} {symbols[query]} {ANSWER}",
        answer=" ".join(symbols[v] for v in order),
        annotations={
            "frontier_size": frontier_sizes,
            "newly_enabled": newly_enabled,
            "node_depth": [depth[v] for v in order],
            "in_degree": [len(parents[v]) for v in order],
            "out_degree": [len(children[v]) for v in order],
            "num_nodes": [num_nodes] * len(order),
            "step": list(range(len(order))),
        },
        extra={"query": symbols[query]},
    )


def parse_prompt(prompt: str) -> tuple[list[tuple[str, str]], str]:
    """(edges, query) read back from a prompt, so a dataset row needs no extra columns to be scored."""
    symbols = prompt.split()
    query_at = symbols.index(QUERY)
    pairs = symbols[1:query_at]  # symbols[0] is <bos>
    return list(zip(pairs[0::2], pairs[1::2])), symbols[query_at + 1]


def _closure_and_parents(prompt: str):
    edges, query = parse_prompt(prompt)
    parents = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    return ancestors(parents, query) | {query}, parents


def is_valid_answer(prompt: str, tokens: list[str]) -> bool:
    """Valid iff exactly the query and its ancestors, each once, every node after all its parents."""
    closure, parents = _closure_and_parents(prompt)
    if len(tokens) != len(closure) or set(tokens) != closure:
        return False
    position = {node: i for i, node in enumerate(tokens)}
    return all(position[p] < position[node] for node in tokens for p in parents[node])


def valid_next_nodes(prompt: str, emitted: list[str]) -> set[str]:
    """The nodes that may come next after the answer prefix `emitted` (teacher forcing)."""
    closure, parents = _closure_and_parents(prompt)
    done = set(emitted)
    return {v for v in closure - done if all(p in done for p in parents[v])}


def vocabulary() -> list[str]:
    return [QUERY, ANSWER] + NODE_SYMBOLS
