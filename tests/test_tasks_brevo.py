"""BREVO: answers are valid closures in topological order; annotations agree with a recomputation."""

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings, strategies as st

from anira_tasks import generate_sample, score_answer, valid_next_tokens
from anira_tasks.brevo import MAX_CHILDREN, MAX_PARENTS, POOL_SIZE

SETTINGS = settings(max_examples=120, deadline=None)


def parse(sample):
    symbols = sample.prompt.split()
    assert symbols[0] == "<bos>" and symbols[-3] == "<query>" and symbols[-1] == "<ans>"
    pairs = symbols[1:-3]
    assert len(pairs) % 2 == 0
    edges = list(zip(pairs[0::2], pairs[1::2]))
    parents, children = defaultdict(set), defaultdict(set)
    for parent, child in edges:
        parents[child].add(parent)
        children[parent].add(child)
    return edges, parents, children, symbols[-2]


def closure_of(parents, query):
    closure, stack = {query}, [query]
    while stack:
        for parent in parents[stack.pop()]:
            if parent not in closure:
                closure.add(parent)
                stack.append(parent)
    return closure


def frontiers(closure, parents, order):
    """The valid choices before each step of `order`."""
    result, done = [], set()
    for node in order:
        result.append({v for v in closure - done if parents[v] <= done})
        done.add(node)
    return result


@SETTINGS
@given(seed=st.integers(0, 2**62), num_nodes=st.integers(3, POOL_SIZE))
def test_answer_is_valid_and_annotations_agree_with_recomputation(seed, num_nodes):
    sample = generate_sample("brevo", num_nodes, seed)
    edges, parents, children, query = parse(sample)
    nodes = {s for edge in edges for s in edge}
    assert len(edges) == len(set(edges)) and len(nodes) == num_nodes  # every node is shown
    assert all(len(parents[v]) <= MAX_PARENTS and len(children[v]) <= MAX_CHILDREN for v in nodes)
    answer = sample.answer_tokens
    closure = closure_of(parents, query)
    # Validity: exactly the closure, once each, every edge respected, query last.
    assert sorted(answer) == sorted(closure) and answer[-1] == query and len(answer) >= 2
    position = {node: i for i, node in enumerate(answer)}
    assert all(position[p] < position[c] for p, c in edges if c in closure)
    assert score_answer(sample, answer)
    # Annotations, recomputed from the text alone.
    steps = frontiers(closure, parents, answer)
    previous = set()
    for t, (node, frontier) in enumerate(zip(answer, steps)):
        assert node in frontier
        assert valid_next_tokens(sample, t) == frontier
        assert sample.annotations["frontier_size"][t] == len(frontier)
        assert sample.annotations["newly_enabled"][t] == len(frontier - previous)
        previous = frontier

    def depth(v):
        return 0 if not parents[v] else 1 + max(depth(p) for p in parents[v])

    assert sample.annotations["node_depth"] == [depth(v) for v in answer]
    assert sample.annotations["in_degree"] == [len(parents[v]) for v in answer]
    assert sample.annotations["out_degree"] == [len(children[v]) for v in answer]
    assert sample.annotations["num_nodes"] == [num_nodes] * len(answer)
    assert sample.annotations["step"] == list(range(len(answer)))
    assert valid_next_tokens(sample, len(answer)) == {"<eos>"}
    assert sample.text.endswith(" <eos>")


@SETTINGS
@given(seed=st.integers(0, 2**62), num_nodes=st.integers(3, 30), order_seed=st.integers(0, 1000))
def test_scorer_accepts_every_valid_order_and_rejects_invalid_ones(seed, num_nodes, order_seed):
    sample = generate_sample("brevo", num_nodes, seed)
    edges, parents, _, query = parse(sample)
    closure = closure_of(parents, query)
    rng, order, done = random.Random(order_seed), [], set()
    while len(order) < len(closure):  # another randomized Kahn order
        node = rng.choice(sorted(v for v in closure - done if parents[v] <= done))
        order.append(node)
        done.add(node)
    assert score_answer(sample, order)
    assert score_answer(sample, order + ["<eos>", "v0"])  # generation is cut at <eos>
    assert not score_answer(sample, order[1:])  # a missing node
    assert not score_answer(sample, order + [order[-1]])  # a repeated node
    outsiders = sorted({s for e in edges for s in e} - closure)
    if outsiders:
        assert not score_answer(sample, [outsiders[0]] + order)  # a node outside the closure
    # Swap the two ends of an edge inside the closure: that edge is no longer respected.
    parent, child = next((p, c) for p, c in edges if c in closure)
    swapped = [child if v == parent else parent if v == child else v for v in order]
    assert not score_answer(sample, swapped)


def test_score_answer_accepts_dataset_rows():
    sample = generate_sample("brevo", 12, 5)
    row = {"task": "brevo", "prompt": sample.prompt, "answer": sample.answer}
    assert score_answer(row, sample.answer_tokens) and score_answer(row, sample.answer)
    assert not score_answer(row, sample.answer_tokens[::-1])


def test_every_node_of_the_dag_appears_in_the_prompt():
    """n counts exactly the nodes the prompt shows: the recipe's isolated roots (~2 %) are redrawn."""
    assert len({s for edge in parse(generate_sample("brevo", 5, seed=15))[0] for s in edge}) == 5  # was 4
    for num_nodes in [3, 4, 5, 6, 7, 8, 12, 20, 30, 45, 60]:
        for seed in range(300):
            edges, *_ = parse(generate_sample("brevo", num_nodes, seed))
            assert len({s for edge in edges for s in edge}) == num_nodes, (num_nodes, seed)


def test_redrawing_changes_only_the_samples_whose_first_dag_had_an_isolated_node(monkeypatch):
    """The redraw continues the random stream: a seed that never needs it gives the recipe's own sample."""
    from anira_tasks import brevo

    def isolated(num_nodes, seed):
        parents = brevo.random_dag(random.Random(seed).random, num_nodes)
        return len({v for v, ps in enumerate(parents) if ps} | {p for ps in parents for p in ps}) < num_nodes

    cases = [(num_nodes, seed) for num_nodes in (5, 12, 40) for seed in range(150)]
    now = [generate_sample("brevo", n, seed).text for n, seed in cases]
    monkeypatch.setattr(brevo, "random_dag_without_isolated_nodes", brevo.random_dag)  # the recipe alone
    recipe = [generate_sample("brevo", n, seed).text for n, seed in cases]
    changed = [(a != b) for a, b in zip(now, recipe)]
    assert changed == [isolated(n, seed) for n, seed in cases] and any(changed)


def test_node_symbols_come_from_the_whole_pool():
    seen = set()
    for seed in range(300):
        edges, *_ = parse(generate_sample("brevo", 5, seed))
        seen |= {s for edge in edges for s in edge}
    assert len(seen) == POOL_SIZE  # small graphs still use every symbol of the pool


@pytest.mark.parametrize("num_nodes, message", [(2, "num_nodes"), (0, "num_nodes"), (POOL_SIZE + 1, "pool"), ("8", "num_nodes")])
def test_bad_sizes_raise_value_error_naming_them(num_nodes, message):
    with pytest.raises(ValueError, match=message):
        generate_sample("brevo", num_nodes, 0)


def test_bad_step_raises():
    sample = generate_sample("brevo", 6, 0)
    with pytest.raises(ValueError, match="step"):
        valid_next_tokens(sample, len(sample.answer_tokens) + 1)
