"""MANO: answers equal an independent evaluation of the prefix expression; knobs and errors."""

import pytest
from hypothesis import given, settings, strategies as st

from anira_tasks import generate_sample, score_answer, valid_next_tokens
from anira_tasks.mano import MAX_MODULUS, MAX_OPERATIONS

SETTINGS = settings(max_examples=150, deadline=None)


def evaluate_prefix(symbols: list[str], modulus: int) -> tuple[int, int, int]:
    """(value, height, operator count) by recursive descent, independent of the generator."""
    position = 0

    def parse() -> tuple[int, int, int]:
        nonlocal position
        symbol = symbols[position]
        position += 1
        if symbol not in "+-*/":
            value = int(symbol)
            assert 0 <= value < modulus
            return value, 0, 0
        left, left_height, left_ops = parse()
        right, right_height, right_ops = parse()
        value = {"+": left + right, "-": left - right, "*": left * right}.get(symbol)
        if symbol == "/":
            value = left * pow(right, -1, modulus)  # raises ValueError if right has no inverse
        return value % modulus, 1 + max(left_height, right_height), 1 + left_ops + right_ops

    result = parse()
    assert position == len(symbols), "trailing symbols after the expression"
    return result


@SETTINGS
@given(seed=st.integers(0, 2**62), num_operations=st.integers(1, 12), modulus=st.integers(2, MAX_MODULUS), with_division=st.booleans())
def test_answer_equals_independent_evaluation(seed, num_operations, modulus, with_division):
    sample = generate_sample("mano", num_operations, seed, modulus=modulus, with_division=with_division)
    symbols = sample.prompt.split()
    assert symbols[:2] == ["<bos>", f"<l={num_operations}>"] and symbols[-1] == "="
    value, height, operator_count = evaluate_prefix(symbols[2:-1], modulus)
    assert sample.answer == str(value)
    assert operator_count == num_operations == sample.complexity
    assert sample.annotations == {"num_operations": [num_operations], "tree_height": [height]}
    assert sample.text == sample.prompt + " " + sample.answer  # docs/tasks.md format: no <eos>
    assert score_answer(sample, [sample.answer]) and not score_answer(sample, [str((value + 1) % modulus)])
    assert valid_next_tokens(sample, 0) == {sample.answer}


def test_division_only_when_enabled():
    plain = [generate_sample("mano", 8, seed).prompt for seed in range(200)]
    with_division = [generate_sample("mano", 8, seed, with_division=True).prompt for seed in range(200)]
    assert not any("/" in prompt.split() for prompt in plain)
    assert any("/" in prompt.split() for prompt in with_division)


def test_question_marker_replaces_length_marker():
    sample = generate_sample("mano", 3, 7, use_length_marker=False)
    assert sample.prompt.split()[1] == "<q>"
    assert sample.answer == generate_sample("mano", 3, 7).answer  # same expression, same value


def test_same_seed_same_sample_and_seeds_differ():
    assert generate_sample("mano", 5, 11) == generate_sample("mano", 5, 11)
    assert len({generate_sample("mano", 5, seed).prompt for seed in range(50)}) > 45


def test_operator_split_reaches_every_shape():
    # l = 3 has 5 tree shapes; heights 2 and 3 must both occur under the uniform split.
    heights = {generate_sample("mano", 3, seed).annotations["tree_height"][0] for seed in range(200)}
    assert heights == {2, 3}


@pytest.mark.parametrize(
    "complexity, params, name",
    [(0, {}, "num_operations"), (MAX_OPERATIONS + 1, {}, "num_operations"), (2, {"modulus": 1}, "modulus"),
     (2, {"modulus": MAX_MODULUS + 1}, "modulus"), (2, {"modulus": 7.0}, "modulus"), (2, {"colour": 1}, "colour"),
     (2, {"with_division": "yes"}, "with_division"), (2, {"use_length_marker": 1}, "use_length_marker")],
)
def test_bad_parameters_raise_value_error_naming_them(complexity, params, name):
    with pytest.raises(ValueError, match=name):
        generate_sample("mano", complexity, 0, **params)
