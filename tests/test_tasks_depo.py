"""DEPO: the context is one directed cycle and every answer follows it k steps."""

import pytest
from hypothesis import given, settings, strategies as st

from anira_tasks import TaskSpec, build_dataset_dict, depo, generate_sample, load_tokenizer, score_answer, valid_next_tokens
from anira_tasks.depo import MAX_HOPS, POOL_SIZE


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**62), hops=st.integers(1, MAX_HOPS), num_nodes=st.integers(2, POOL_SIZE), data=st.data())
def test_answers_follow_the_cycle(seed, hops, num_nodes, data):
    num_queries = data.draw(st.integers(1, min(num_nodes, 5)))
    sample = generate_sample("depo", hops, seed, num_nodes=num_nodes, num_queries=num_queries)
    symbols = sample.text.split()
    assert symbols[0] == "<bos>" and symbols[-1] == "<eos>"
    edge_symbols = symbols[1 : 1 + 2 * num_nodes]
    successor = dict(zip(edge_symbols[0::2], edge_symbols[1::2]))
    # One cycle through all n nodes.
    assert len(successor) == num_nodes and set(successor.values()) == set(successor)
    node, walk = edge_symbols[0], []
    for _ in range(num_nodes):
        node = successor[node]
        walk.append(node)
    assert len(set(walk)) == num_nodes
    queries = symbols[1 + 2 * num_nodes : -1]
    assert len(queries) == 4 * num_queries
    for i in range(num_queries):
        marker, start, ans, target = queries[4 * i : 4 * i + 4]
        assert (marker, ans) == (f"<hop={hops}>", "<ans>")
        node = start
        for _ in range(hops):
            node = successor[node]
        assert target == node
    assert len({queries[4 * i + 1] for i in range(num_queries)}) == num_queries  # distinct starts
    assert sample.answer == queries[-1]
    assert sample.annotations == {"hops": [hops], "num_nodes": [num_nodes]}
    assert score_answer(sample, [sample.answer]) and valid_next_tokens(sample, 0) == {sample.answer}
    wrong = next(v for v in successor if v != sample.answer)
    assert not score_answer(sample, [wrong])


@pytest.mark.parametrize(
    "hops, params, name",
    [(0, {}, "hops"), (MAX_HOPS + 1, {}, "hops"), (1, {"num_nodes": 1}, "num_nodes"),
     (1, {"num_nodes": POOL_SIZE + 1}, "num_nodes"), (1, {"num_queries": 0}, "num_queries"),
     (1, {"num_nodes": 4, "num_queries": 5}, "num_queries"), (1, {"supervise_all_queries": "all"}, "supervise_all_queries"),
     (1, {"show_solved_answers": "no"}, "show_solved_answers")],
)
def test_bad_parameters_raise_value_error_naming_them(hops, params, name):
    with pytest.raises(ValueError, match=name):
        generate_sample("depo", hops, 0, **params)


def test_supervise_all_queries_marks_the_solved_targets():
    plain = generate_sample("depo", 3, 9, num_nodes=8, num_queries=4)
    supervised = generate_sample("depo", 3, 9, num_nodes=8, num_queries=4, supervise_all_queries=True)
    assert plain.text == supervised.text and plain.prompt_label_positions == []
    symbols = supervised.prompt.split()
    answer_markers = [i for i, s in enumerate(symbols) if s == "<ans>"]
    assert answer_markers[-1] == len(symbols) - 1  # the last query is the answer
    assert supervised.prompt_label_positions == [i + 1 for i in answer_markers[:-1]]  # the 3 solved targets


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**62), hops=st.integers(1, MAX_HOPS), num_queries=st.integers(2, 8))
def test_hidden_solved_answers_leave_the_prompt_nothing_but_edges_and_questions(seed, hops, num_queries):
    params = dict(num_nodes=8, num_queries=num_queries, supervise_all_queries=True, edge_format="token", hop_format="unary")
    shown = generate_sample("depo", hops, seed, **params)
    hidden = generate_sample("depo", hops, seed, **params, show_solved_answers=False)
    assert hidden.answer == shown.answer  # the same graph and queries
    shown_symbols, hidden_symbols = shown.prompt.split(), hidden.prompt.split()
    answers = [shown_symbols[i] for i in shown.prompt_label_positions]
    assert hidden.prompt_label_symbols == answers  # every earlier query still supervised, with its answer
    # ... which is not in the prompt: only the answers' symbols are gone, and each label sits right after its <ans>
    assert hidden_symbols == [s for i, s in enumerate(shown_symbols) if i not in shown.prompt_label_positions]
    assert [hidden_symbols[i - 1] for i in hidden.prompt_label_positions] == ["<ans>"] * (num_queries - 1)
    assert not depo.solved_queries_shown(**params, show_solved_answers=False) and depo.solved_queries_shown(**params)


def test_hidden_solved_answers_are_labels_not_inputs():
    params = {"num_nodes": 8, "num_queries": 4, "supervise_all_queries": True, "edge_format": "token", "show_solved_answers": False}
    spec = TaskSpec("depo", [2], num_train=10, num_validation=2, num_test_per_size=1, task_params=params)
    tokenizer = load_tokenizer("depo")
    for row in build_dataset_dict(spec, num_proc=1)["train"]:
        sample = generate_sample("depo", row["complexity"], row["seed"], **params)
        assert row["text"] == sample.text
        labelled = [i for i, label in enumerate(row["labels"]) if label != -100]
        assert labelled == [*sample.prompt_label_positions, len(row["input_ids"]) - 2, len(row["input_ids"]) - 1]
        answers = tokenizer.convert_tokens_to_ids(sample.prompt_label_symbols)
        assert [row["labels"][i] for i in sample.prompt_label_positions] == answers
        assert all(row["input_ids"][i] != answer for i, answer in zip(sample.prompt_label_positions, answers))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**62), hops=st.integers(1, MAX_HOPS))
def test_unary_hop_format_writes_k_as_k_copies_of_the_one_hop_symbol(seed, hops):
    marker = generate_sample("depo", hops, seed, num_nodes=8, num_queries=3, edge_format="token")
    unary = generate_sample("depo", hops, seed, num_nodes=8, num_queries=3, edge_format="token", hop_format="unary")
    assert unary.answer == marker.answer  # the same graph and queries, only the count is written otherwise
    assert unary.text.replace(" ".join(["<hop=1>"] * hops), f"<hop={hops}>") == marker.text
    assert {s for s in unary.text.split() if s.startswith("<hop")} == {"<hop=1>"}


def test_unary_hops_give_an_unseen_k_no_symbol_that_the_seen_k_lack():
    params = dict(num_nodes=8, num_queries=6, edge_format="token", hop_format="unary")
    seen = {s for k in (1, 2, 3, 4) for seed in range(200) for s in generate_sample("depo", k, seed, **params).text.split()}
    for k in (5, 6):
        unseen = {s for seed in range(200) for s in generate_sample("depo", k, seed, **params).text.split()}
        assert unseen <= seen
    marker_params = {**params, "hop_format": "marker"}
    assert "<hop=5>" in generate_sample("depo", 5, 0, **marker_params).text.split()


def test_a_bad_hop_format_is_refused_by_name():
    with pytest.raises(ValueError, match="hop_format"):
        generate_sample("depo", 2, 0, hop_format="binary")
