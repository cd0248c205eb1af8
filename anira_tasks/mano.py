"""MANO: modular arithmetic in prefix notation; the knob is the number of operators l.

`<bos> <l=3> - 12 * 2 * 11 18 = 7` (docs/tasks.md). Decisions where docs/tasks.md is silent:
- The modulus is a task parameter (default 23), 2 <= modulus <= MAX_MODULUS = 97, so that one
  tokenizer (values 0..96) serves every modulus; values >= modulus simply never occur.
- l is at most MAX_OPERATIONS = 32 (the length-marker vocabulary `<l=1>` .. `<l=32>`).
- Division `/` (multiplication by the modular inverse) is off by default; with it on, a divisor
  subtree whose value has no inverse (zero, or not coprime with the modulus) is drawn again,
  the subtree only, so that large l does not reject whole trees over and over.
- Annotations for the single answer symbol: `num_operations` (l) and `tree_height` (operators on
  the longest root-to-leaf path; a leaf has height 0, so l = 1 gives 1).
"""

import random
from math import gcd

from .common import BOS, Sample, check_bool, check_int

DEFAULT_MODULUS = 23
MAX_MODULUS = 97
MAX_OPERATIONS = 32
OPERATORS = ("+", "-", "*")
DIVISION = "/"
QUESTION_MARKER = "<q>"  # replaces `<l=..>` when the difficulty must not be stated up front


def length_marker(num_operations: int) -> str:
    return f"<l={num_operations}>"


def apply_operator(operator: str, left: int, right: int, modulus: int) -> int:
    if operator == "+":
        return (left + right) % modulus
    if operator == "-":
        return (left - right) % modulus
    if operator == "*":
        return (left * right) % modulus
    return (left * pow(right, -1, modulus)) % modulus


def _random_tree(rng: random.Random, num_operations: int, modulus: int, operators: tuple[str, ...]):
    """Returns (prefix symbols, value, height) of a random tree with exactly `num_operations` operators."""
    if num_operations == 0:
        leaf = rng.randrange(modulus)
        return [str(leaf)], leaf, 0
    operator = rng.choice(operators)
    num_left = rng.randrange(num_operations)  # uniform split of the remaining l - 1 operators
    left_symbols, left_value, left_height = _random_tree(rng, num_left, modulus, operators)
    while True:
        right_symbols, right_value, right_height = _random_tree(rng, num_operations - 1 - num_left, modulus, operators)
        if operator != DIVISION or gcd(right_value, modulus) == 1:
            break
    value = apply_operator(operator, left_value, right_value, modulus)
    return [operator] + left_symbols + right_symbols, value, 1 + max(left_height, right_height)


def check_params(complexity: int, modulus: int = DEFAULT_MODULUS, use_length_marker: bool = True, with_division: bool = False) -> None:
    check_int("num_operations (complexity)", complexity, 1, MAX_OPERATIONS)
    check_int("modulus", modulus, 2, MAX_MODULUS)
    check_bool("use_length_marker", use_length_marker)
    check_bool("with_division", with_division)


def generate(complexity: int, seed: int, modulus: int = DEFAULT_MODULUS, use_length_marker: bool = True, with_division: bool = False) -> Sample:
    check_params(complexity, modulus, use_length_marker, with_division)
    rng = random.Random(seed)
    operators = OPERATORS + (DIVISION,) if with_division else OPERATORS
    symbols, value, height = _random_tree(rng, complexity, modulus, operators)
    marker = length_marker(complexity) if use_length_marker else QUESTION_MARKER
    return Sample(
        task="mano",
        complexity=complexity,
        seed=seed,
        prompt=" ".join([BOS, marker, *symbols, "="]),
        answer=str(value),
        annotations={"num_operations": [complexity], "tree_height": [height]},
        has_eos=False,
        extra={"modulus": modulus},
    )


def vocabulary() -> list[str]:
    markers = [length_marker(l) for l in range(1, MAX_OPERATIONS + 1)] + [QUESTION_MARKER]
    return markers + list(OPERATORS) + [DIVISION, "="] + [str(v) for v in range(MAX_MODULUS)]
