"""CLRS-style tasks follow the algorithm semantics of docs/tasks.md (hand-worked cases and properties)."""

import bisect
from collections import deque

import pytest
from hypothesis import given, settings, strategies as st

from anira_tasks import generate_sample, score_answer, valid_next_tokens
from anira_tasks.clrs import ALGORITHMS, MAX_SIZE, follow_pointers, kahn_statistics, topological_sort

SETTINGS = settings(max_examples=80, deadline=None)
sizes = st.integers(2, 16)
seeds = st.integers(0, 2**62)
labelings = st.sampled_from(["pool", "index"])


def parse(sample):
    """Fields of a CLRS-Text prompt: {name: list | matrix | scalar} in index space, and the labels."""
    symbols = sample.prompt.split()
    assert symbols[:3] == ["<bos>", sample.task, ":"] and symbols[-4] == "outputs"
    fields, i = {}, 3
    while symbols[i] != "outputs":
        name = symbols[i]
        assert symbols[i + 1] == ":"
        i += 2
        if symbols[i] != "[":
            value, i = int(symbols[i]), i + 1
        elif symbols[i + 1] == "[":  # matrix
            value, i = [], i + 1
            while symbols[i] == "[":
                end = symbols.index("]", i)
                value.append([int(s) for s in symbols[i + 1 : end]])
                i = end + 1
            assert symbols[i] == "]"
            i += 1
        else:
            end = symbols.index("]", i)
            value, i = [int(s) for s in symbols[i + 1 : end]], end + 1
        fields[name] = value
        if symbols[i] == ",":
            i += 1
    labels = fields.get("nodes")
    return fields, labels


def to_index(labels, value):
    return labels.index(value) if labels is not None else value


def pointer_answer(sample, labels):
    answer = sample.answer_tokens
    end = answer.index("]")
    assert answer[0] == "["
    return [to_index(labels, int(s)) for s in answer[1:end]], answer[end + 1 :]


# ----------------------------------------------------------------------------- topological sort

HAND_WORKED = [
    # (adjacency, topo, topo_head), worked through CLRS DFS by hand
    ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [1, 2, 2], 0),  # a chain 0 -> 1 -> 2
    ([[0, 0, 0], [0, 0, 0], [1, 1, 0]], [0, 0, 1], 2),  # 2 -> 0, 2 -> 1: order 2 1 0
    ([[0, 0], [0, 0]], [0, 0], 1),  # no edges: later start nodes go in front
    # 0->1, 0->2, 0->4, 1->4, 3->1: finish order 4 1 2 0 3, so order 3 0 2 1 4
    ([[0, 1, 1, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], [2, 4, 1, 0, 4], 3),
]


@pytest.mark.parametrize("adjacency, topo, head", HAND_WORKED)
def test_topological_sort_matches_hand_worked_graphs(adjacency, topo, head):
    assert topological_sort(adjacency)[:2] == (topo, head)


def test_kahn_statistics_on_a_hand_worked_graph():
    adjacency, topo, head = HAND_WORKED[3]
    frontier, newly = kahn_statistics(adjacency, follow_pointers(topo, head))
    # Order 3 0 2 1 4; frontiers {0,3} {0} {1,2} {1} {4}; newly enabled 2 0 2 0 1. Per node index:
    assert frontier == [1, 1, 2, 2, 1] and newly == [0, 0, 2, 2, 1]


@SETTINGS
@given(seed=seeds, n=sizes, node_labels=labelings)
def test_following_topo_pointers_visits_a_valid_topological_order(seed, n, node_labels):
    sample = generate_sample("topological_sort", n, seed, node_labels=node_labels)
    fields, labels = parse(sample)
    adjacency = fields["A"]
    assert len(adjacency) == n and all(adjacency[u][u] == 0 for u in range(n))
    topo, rest = pointer_answer(sample, labels)
    assert rest[:3] == [",", "topo_head", ":"] and len(rest) == 4
    head = to_index(labels, int(rest[3]))
    order = follow_pointers(topo, head)
    assert sorted(order) == list(range(n))  # every node once, the last points to itself
    position = {u: i for i, u in enumerate(order)}
    assert all(position[u] < position[v] for u in range(n) for v in range(n) if adjacency[u][v])
    assert (topo, head) == topological_sort(adjacency)[:2]
    # Annotations: node symbols carry the node's values, structure symbols -1.
    notes = sample.annotations
    assert all(len(values) == len(sample.answer_tokens) for values in notes.values())
    frontier, newly = kahn_statistics(adjacency, order)
    for k, node in enumerate(notes["answer_node"]):
        if node < 0:
            assert all(notes[name][k] == -1 for name in ("dfs_depth", "kahn_frontier_size", "kahn_newly_enabled", "node_degree"))
            continue
        assert notes["kahn_frontier_size"][k] == frontier[node] and notes["kahn_newly_enabled"][k] == newly[node]
        assert notes["node_degree"][k] == sum(adjacency[node]) + sum(row[node] for row in adjacency)
        assert notes["dfs_depth"][k] >= 0 and notes["size"][k] == n
    assert notes["answer_node"][-1] == head


# ----------------------------------------------------------------------------- dfs and bfs


@SETTINGS
@given(seed=seeds, n=sizes, node_labels=labelings)
def test_dfs_parents_are_the_clrs_dfs_forest(seed, n, node_labels):
    sample = generate_sample("dfs", n, seed, node_labels=node_labels)
    fields, labels = parse(sample)
    adjacency = fields["A"]
    parents, rest = pointer_answer(sample, labels)
    assert rest == []
    # Independent DFS with an explicit stack of neighbour iterators.
    expected, seen = list(range(n)), [False] * n
    for start in range(n):
        if seen[start]:
            continue
        seen[start], stack = True, [(start, iter(range(n)))]
        while stack:
            u, neighbours = stack[-1]
            v = next((v for v in neighbours if adjacency[u][v] and not seen[v]), None)
            if v is None:
                stack.pop()
            else:
                seen[v], expected[v] = True, u
                stack.append((v, iter(range(n))))
    assert parents == expected


@SETTINGS
@given(seed=seeds, n=sizes, node_labels=labelings)
def test_bfs_parents_are_smallest_index_nodes_of_the_previous_level(seed, n, node_labels):
    sample = generate_sample("bfs", n, seed, node_labels=node_labels)
    fields, labels = parse(sample)
    adjacency, source = fields["A"], to_index(labels, fields["s"])
    assert all(adjacency[u][v] == adjacency[v][u] for u in range(n) for v in range(n))
    parents, _ = pointer_answer(sample, labels)
    distance, queue = {source: 0}, deque([source])
    while queue:
        u = queue.popleft()
        for v in range(n):
            if adjacency[u][v] and v not in distance:
                distance[v] = distance[u] + 1
                queue.append(v)
    for v in range(n):
        if v == source or v not in distance:
            assert parents[v] == v
        else:
            previous_level = [u for u in range(n) if distance.get(u) == distance[v] - 1 and adjacency[u][v]]
            assert parents[v] == min(previous_level)


def test_bfs_hand_worked():
    # Path 0 - 1 - 2 plus 0 - 2, source 1: both 0 and 2 are reached from 1; 3 is isolated.
    from anira_tasks.clrs import bfs_parents

    adjacency = [[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert bfs_parents(adjacency, 1) == [1, 1, 1, 3]
    assert bfs_parents(adjacency, 0) == [0, 0, 0, 3]


# ----------------------------------------------------------------------------- arrays


@SETTINGS
@given(seed=seeds, n=sizes, max_key=st.integers(1, MAX_SIZE - 1))
def test_array_algorithms(seed, n, max_key):
    sorting = generate_sample("insertion_sort", n, seed, max_key=max_key)
    keys = parse(sorting)[0]["key"]
    assert len(keys) == n and all(0 <= k <= max_key for k in keys)
    assert sorting.answer == " ".join(["[", *map(str, sorted(keys)), "]"])

    minimum = generate_sample("minimum", n, seed, max_key=max_key)
    keys = parse(minimum)[0]["key"]
    assert int(minimum.answer) == min(range(n), key=lambda i: (keys[i], i))

    search = generate_sample("binary_search", n, seed, max_key=max_key)
    fields = parse(search)[0]
    keys, target = fields["key"], fields["target"]
    assert keys == sorted(keys)
    assert int(search.answer) == next((i for i in range(n) if keys[i] >= target), n - 1)
    assert int(search.answer) == min(bisect.bisect_left(keys, target), n - 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_exact_match_scoring_and_per_token_targets(algorithm):
    sample = generate_sample(algorithm, 6, 3)
    tokens = sample.answer_tokens
    assert score_answer(sample, tokens) and score_answer(sample, tokens + ["<eos>"])
    assert not score_answer(sample, tokens[:-1]) and not score_answer(sample, tokens + ["0"])
    assert [valid_next_tokens(sample, k) for k in range(len(tokens))] == [{t} for t in tokens]
    assert valid_next_tokens(sample, len(tokens)) == {"<eos>"}
    assert all(len(values) == len(tokens) for values in sample.annotations.values())


@pytest.mark.parametrize(
    "task, size, params, name",
    [("topological_sort", 1, {}, "size"), ("bfs", MAX_SIZE + 1, {}, "size"), ("insertion_sort", 4, {"max_key": 0}, "max_key"),
     ("minimum", 4, {"max_key": MAX_SIZE}, "max_key"), ("dfs", 4, {"node_labels": "letters"}, "node_labels"),
     ("minimum", 4, {"node_labels": "pool"}, "node_labels"), ("dfs", 4, {"max_key": 5}, "max_key"), ("quicksort", 4, {}, "task")],
)
def test_bad_parameters_raise_value_error_naming_them(task, size, params, name):
    with pytest.raises(ValueError, match=name):
        generate_sample(task, size, 0, **params)


def test_unknown_algorithm_raises_value_error():
    from anira_tasks import clrs

    with pytest.raises(ValueError, match="algorithm"):
        clrs.generate("quicksort", 4, 0)
