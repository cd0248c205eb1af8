"""CLRS-style algorithmic tasks in CLRS-Text layout; the knob is the input size n.

`<bos> topological_sort : nodes : [ 3 17 40 ] , A : [ [ 0 1 1 ] [ 0 0 1 ] [ 0 0 0 ] ] outputs : topo : [ 17 40 40 ] , topo_head : 3 <eos>`

Decisions where docs/tasks.md is silent:
- Every number is a symbol from one pool `0` .. `63` (MAX_SIZE = 64): sizes 2 <= n <= 64, keys in
  0..max_key (array tasks only; max_key <= 63, default 63), adjacency entries 0/1.
- Graph tasks (`topological_sort`, `dfs`, `bfs`) name their n nodes by a random sorted draw from
  the pool (`node_labels="pool"`, the default) listed as `nodes : [ ... ]`, so that a size above
  the training range shows no node symbol that training never showed; index order is label
  order, so the CLRS semantics are unchanged. `node_labels="index"` gives the plain CLRS-Text
  layout with nodes 0..n-1. Array outputs (`minimum`, `binary_search`) are indices 0..n-1 by
  nature; their symbols still occur in training as key values.
- Graphs are Erdos-Renyi with p = 0.5 without self loops: directed upper triangle then a random
  node permutation for `topological_sort`, directed for `dfs`, undirected for `bfs`.
- The prompt ends with the first output's name and `:`; the answer is the output value(s), e.g.
  `[ ... ] , topo_head : h` for topological sort, `[ ... ]` for pointer lists, `i` for indices.
- Structure and content: the answer's brackets, separators and field names (`ANSWER_STRUCTURE_SYMBOLS`) follow
  from the layout and n; its numbers are the content (`anira_tasks.answer_content_mask`).
- Annotations: `size` (n) for every answer symbol of every algorithm. Graph tasks add
  `answer_node` (the node a pointer-list element or `topo_head` value belongs to, -1 for `[`, `]`,
  `,`, names). Topological sort adds, for node symbols, `dfs_depth` (depth in the DFS forest of
  the node the symbol belongs to, when it finished), `kahn_frontier_size` / `kahn_newly_enabled`
  (Kahn's algorithm emitting the nodes in the output order: how many nodes were available when
  this node was emitted, and how many became available through the previous emission; all of
  them for the first node) and `node_degree` (in + out degree); -1 on structure symbols.
"""

import bisect
import random

from .common import BOS, Sample, check_int

MAX_SIZE = 64
MIN_SIZE = 2
NUMBER_SYMBOLS = [str(i) for i in range(MAX_SIZE)]
ALGORITHMS = ("topological_sort", "dfs", "bfs", "insertion_sort", "minimum", "binary_search")
GRAPH_ALGORITHMS = ("topological_sort", "dfs", "bfs")
FIELD_NAMES = ("nodes", "A", "s", "key", "target", "topo", "topo_head", "pi", "sorted", "min", "index")
STRUCTURE_SYMBOLS = (":", ",", "[", "]", "outputs")
# Answer symbols that the output layout fixes once n is known (`[`, `]`, `,`, `:`, the name `topo_head`): the
# content of an answer is its numbers (pointers, keys, indices). Teacher-forced accuracy over every answer token
# counts these, which a model predicts right before it computes anything (topological sort at n = 4: 5 of 10).
ANSWER_STRUCTURE_SYMBOLS = frozenset(STRUCTURE_SYMBOLS) | frozenset(FIELD_NAMES)
NOT_A_NODE = -1


# ----------------------------------------------------------------------------- algorithms
# Pure functions on index-space inputs; the generators below only draw inputs and render text.

def topological_sort(adjacency: list[list[int]]) -> tuple[list[int], int, list[int]]:
    """CLRS DFS-based topological sort: (topo successor pointers, topo_head, DFS depth at finish)."""
    n = len(adjacency)
    white, gray, black = 0, 1, 2
    color, topo, depth = [white] * n, list(range(n)), [0] * n
    head = 0

    def visit(u: int, d: int) -> None:
        nonlocal head
        color[u], depth[u] = gray, d
        for v in range(n):
            if adjacency[u][v] and color[v] == white:
                visit(v, d + 1)
        color[u] = black
        if color[head] == black:  # the initial head 0 may not have finished yet
            topo[u] = head
        head = u

    for start in range(n):
        if color[start] == white:
            visit(start, 0)
    return topo, head, depth


def dfs_parents(adjacency: list[list[int]]) -> list[int]:
    """Parent pointers of the CLRS DFS forest (start nodes and neighbours in index order)."""
    n = len(adjacency)
    parent, seen = list(range(n)), [False] * n

    def visit(u: int) -> None:
        seen[u] = True
        for v in range(n):
            if adjacency[u][v] and not seen[v]:
                parent[v] = u
                visit(v)

    for start in range(n):
        if not seen[start]:
            visit(start)
    return parent


def bfs_parents(adjacency: list[list[int]], source: int) -> list[int]:
    """Level-synchronous BFS: parent = smallest-index neighbour in the previous frontier."""
    n = len(adjacency)
    parent, reached, frontier = list(range(n)), {source}, [source]
    while frontier:
        next_frontier = []
        for v in range(n):
            if v not in reached:
                for u in frontier:  # frontier is sorted, so the first hit is the smallest index
                    if adjacency[u][v]:
                        parent[v] = u
                        next_frontier.append(v)
                        break
        reached.update(next_frontier)
        frontier = next_frontier
    return parent


def kahn_statistics(adjacency: list[list[int]], order: list[int]) -> tuple[list[int], list[int]]:
    """Per node: Kahn frontier size when emitted in `order`, and nodes newly enabled just before."""
    n = len(adjacency)
    waiting = [sum(adjacency[u][v] for u in range(n)) for v in range(n)]
    available = {v for v in range(n) if waiting[v] == 0}
    frontier_size, newly_enabled = [0] * n, [0] * n
    num_new = len(available)
    for node in order:
        frontier_size[node], newly_enabled[node] = len(available), num_new
        available.discard(node)
        num_new = 0
        for v in range(n):
            if adjacency[node][v]:
                waiting[v] -= 1
                if waiting[v] == 0:
                    available.add(v)
                    num_new += 1
    return frontier_size, newly_enabled


def follow_pointers(topo: list[int], head: int) -> list[int]:
    order = [head]
    while topo[order[-1]] != order[-1]:
        order.append(topo[order[-1]])
    return order


# ----------------------------------------------------------------------------- generators

def _random_graph(rng: random.Random, n: int, kind: str) -> list[list[int]]:
    adjacency = [[0] * n for _ in range(n)]
    for u in range(n):
        for v in range(n):
            if u == v or (kind != "directed" and v < u):
                continue
            if rng.random() < 0.5:
                adjacency[u][v] = 1
                if kind == "undirected":
                    adjacency[v][u] = 1
    if kind == "dag":  # upper triangle, then hide the order behind a random permutation
        permutation = rng.sample(range(n), n)
        permuted = [[0] * n for _ in range(n)]
        for u in range(n):
            for v in range(n):
                permuted[permutation[u]][permutation[v]] = adjacency[u][v]
        adjacency = permuted
    return adjacency


def _render_list(values) -> list[str]:
    return ["["] + [str(v) for v in values] + ["]"]


def _render_matrix(adjacency) -> list[str]:
    return ["["] + [s for row in adjacency for s in _render_list(row)] + ["]"]


def check_params(algorithm: str, complexity: int, max_key: int = MAX_SIZE - 1, node_labels: str = "pool") -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    check_int("size (complexity)", complexity, MIN_SIZE, MAX_SIZE)
    check_int("max_key", max_key, 1, MAX_SIZE - 1)
    if node_labels not in ("pool", "index"):
        raise ValueError(f"node_labels must be 'pool' or 'index', got {node_labels!r}")


def generate(algorithm: str, complexity: int, seed: int, max_key: int = MAX_SIZE - 1, node_labels: str = "pool") -> Sample:
    check_params(algorithm, complexity, max_key, node_labels)
    rng = random.Random(seed)
    n = complexity
    inputs: list[str] = []
    if algorithm in GRAPH_ALGORITHMS:
        labels = sorted(rng.sample(range(MAX_SIZE), n)) if node_labels == "pool" else list(range(n))
        if node_labels == "pool":
            inputs += ["nodes", ":", *_render_list(labels), ","]
        kind = {"topological_sort": "dag", "dfs": "directed", "bfs": "undirected"}[algorithm]
        adjacency = _random_graph(rng, n, kind)
        if algorithm == "bfs":
            source = rng.randrange(n)
            inputs += ["s", ":", str(labels[source]), ","]
        inputs += ["A", ":", *_render_matrix(adjacency)]
        if algorithm == "topological_sort":
            topo, head, dfs_depth = topological_sort(adjacency)
            output_name, pointers = "topo", topo
        else:
            output_name = "pi"
            pointers = dfs_parents(adjacency) if algorithm == "dfs" else bfs_parents(adjacency, source)
        answer = [*_render_list(labels[p] for p in pointers)]
        answer_node = [NOT_A_NODE] + list(range(n)) + [NOT_A_NODE]
        if algorithm == "topological_sort":
            answer += [",", "topo_head", ":", str(labels[head])]
            answer_node += [NOT_A_NODE] * 3 + [head]
        annotations = {"size": [n] * len(answer), "answer_node": answer_node}
        if algorithm == "topological_sort":
            frontier_size, newly_enabled = kahn_statistics(adjacency, follow_pointers(topo, head))
            degree = [sum(adjacency[u]) + sum(row[u] for row in adjacency) for u in range(n)]
            for name, per_node in [("dfs_depth", dfs_depth), ("kahn_frontier_size", frontier_size),
                                   ("kahn_newly_enabled", newly_enabled), ("node_degree", degree)]:
                annotations[name] = [per_node[u] if u != NOT_A_NODE else NOT_A_NODE for u in answer_node]
    else:
        keys = [rng.randint(0, max_key) for _ in range(n)]
        if algorithm == "insertion_sort":
            inputs += ["key", ":", *_render_list(keys)]
            output_name, answer = "sorted", _render_list(sorted(keys))
        elif algorithm == "minimum":
            inputs += ["key", ":", *_render_list(keys)]
            output_name, answer = "min", [str(keys.index(min(keys)))]
        else:
            keys.sort()
            target = rng.randint(0, max_key)
            inputs += ["key", ":", *_render_list(keys), ",", "target", ":", str(target)]
            output_name, answer = "index", [str(min(bisect.bisect_left(keys, target), n - 1))]
        annotations = {"size": [n] * len(answer)}
    prompt = [BOS, algorithm, ":", *inputs, "outputs", ":", output_name, ":"]
    return Sample(
        task=algorithm,
        complexity=complexity,
        seed=seed,
        prompt=" ".join(prompt),
        answer=" ".join(answer),
        annotations=annotations,
    )


def vocabulary() -> list[str]:
    return list(ALGORITHMS) + list(FIELD_NAMES) + list(STRUCTURE_SYMBOLS) + NUMBER_SYMBOLS
