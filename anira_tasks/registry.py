"""The task registry and the task-agnostic entry points: generate, score, valid next tokens.

`score_answer` and `valid_next_tokens` accept a `Sample` or a dataset row (a dict with at least
`task`, `prompt` and `answer`): BREVO reads its edges back from the prompt, so rows need no
extra columns. Generated tokens are cut at the first `<eos>` (and the `<eos>` dropped) before
scoring, so a model's raw continuation can be passed as is.
"""

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

from . import brevo, clrs, depo, mano
from .common import EOS, Sample, check_seed


def _field(sample, name: str):
    return getattr(sample, name) if isinstance(sample, Sample) else sample[name]


def _answer_tokens(sample) -> list[str]:
    return _field(sample, "answer").split()


def _has_eos(sample) -> bool:
    if isinstance(sample, Sample):
        return sample.has_eos
    return TASKS[sample["task"]].family != "mano"


def _uniform_weights(sizes: Sequence[int]) -> list[float]:
    return [1.0] * len(sizes)


def _brevo_weights(sizes: Sequence[int]) -> list[float]:
    # docs/tasks.md: P(n) proportional to 1 / (n + sqrt(N)), N the largest training size.
    largest = max(sizes)
    return [1.0 / (n + math.sqrt(largest)) for n in sizes]


def _exact_match(sample, tokens: list[str]) -> bool:
    return tokens == _answer_tokens(sample)


def _unique_next(sample, step: int) -> set[str]:
    return {_answer_tokens(sample)[step]}


def _brevo_valid(sample, tokens: list[str]) -> bool:
    return brevo.is_valid_answer(_field(sample, "prompt"), tokens)


def _brevo_next(sample, step: int) -> set[str]:
    return brevo.valid_next_nodes(_field(sample, "prompt"), _answer_tokens(sample)[:step])


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # which tokenizer under tokenization/ reads it
    knob: str  # what `complexity` counts
    description: str
    generate: Callable[..., Sample]  # generate(complexity, seed, **task_params)
    check_params: Callable[..., None]  # check_params(complexity, **task_params), raises ValueError
    score: Callable[[Any, list[str]], bool] = _exact_match
    valid_next: Callable[[Any, int], set[str]] = _unique_next
    train_size_weights: Callable[[Sequence[int]], list[float]] = _uniform_weights
    default_params: dict = field(default_factory=dict)
    # Answer symbols that only lay the answer out (CLRS brackets, separators, field names); none for the others.
    structure_symbols: frozenset[str] = frozenset()


_CLRS_DESCRIPTIONS = {
    "topological_sort": "CLRS DFS topological sort of a random DAG (adjacency matrix in; successor-pointer list `topo` and `topo_head` out)",
    "dfs": "CLRS depth-first search of a random directed graph (parent pointers of the DFS forest out, roots point to themselves)",
    "bfs": "level-synchronous breadth-first search of a random undirected graph from a source (parent pointers out)",
    "insertion_sort": "sort a list of small integer keys",
    "minimum": "index of the first minimum of a list of small integer keys",
    "binary_search": "smallest index i with key[i] >= target in a sorted list (clamped to n-1)",
}

TASKS: dict[str, Task] = {
    "mano": Task(
        "mano", "mano", "number of operators l",
        "MANO: evaluate a random arithmetic expression in prefix notation modulo m (default 23).",
        mano.generate, mano.check_params,
        default_params={"modulus": mano.DEFAULT_MODULUS, "use_length_marker": True, "with_division": False},
    ),
    "brevo": Task(
        "brevo", "brevo", "number of graph nodes n",
        "BREVO: list a query node and all its ancestors in a random DAG in a valid topological order.",
        brevo.generate, brevo.check_params,
        score=_brevo_valid, valid_next=_brevo_next, train_size_weights=_brevo_weights,
    ),
    "depo": Task(
        "depo", "depo", "number of hops k",
        "DEPO: follow k edges of a directed cycle listed in shuffled order.",
        depo.generate, depo.check_params,
        default_params={"num_nodes": depo.DEFAULT_NUM_NODES, "num_queries": 1, "supervise_all_queries": False, "edge_format": "pair",
                        "hop_format": "marker", "show_solved_answers": True},
    ),
    **{
        name: Task(
            name, "clrs", "input size n", f"CLRS-Text {name}: {_CLRS_DESCRIPTIONS[name]}.",
            partial(clrs.generate, name), partial(clrs.check_params, name),
            default_params={"node_labels": "pool"} if name in clrs.GRAPH_ALGORITHMS else {"max_key": clrs.MAX_SIZE - 1},
            structure_symbols=clrs.ANSWER_STRUCTURE_SYMBOLS,
        )
        for name in clrs.ALGORITHMS
    },
}


def family_of(task_or_family: str) -> str:
    """The tokenizer family of a task name ("bfs" -> "clrs"); a family name is its own family."""
    families = {task.family for task in TASKS.values()}
    if task_or_family in families:
        return task_or_family
    return get_task(task_or_family).family


def get_task(task: str) -> Task:
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task]


def _check_task_params(task: Task, task_params: dict) -> None:
    unknown = set(task_params) - set(task.default_params)
    if unknown:
        raise ValueError(f"unknown task_params for {task.name}: {sorted(unknown)} (accepted: {sorted(task.default_params)})")


def generate_sample(task: str, complexity: int, seed: int, **task_params) -> Sample:
    """The sample of `task` at difficulty `complexity` drawn with `seed`: same inputs, same sample.

    `seed` must be a non-negative integer (a ValueError names it otherwise)."""
    spec = get_task(task)
    _check_task_params(spec, task_params)
    return spec.generate(complexity, check_seed(seed), **task_params)


def _generated(tokens) -> list[str]:
    tokens = tokens.split() if isinstance(tokens, str) else list(tokens)
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


def score_answer(sample, generated_answer_tokens: list[str] | str) -> bool:
    """True iff the generated answer is correct: exact match, or a valid order for BREVO."""
    return get_task(_field(sample, "task")).score(sample, _generated(generated_answer_tokens))


def answer_content_mask(sample) -> list[bool]:
    """One bool per answer symbol: True where it carries content, False on the task's structure symbols
    (`Task.structure_symbols`: CLRS's `[ ] , :` and field names such as `topo_head`). All True for tasks
    without structure symbols (MANO, BREVO, DEPO), whose every answer symbol is content."""
    structure = get_task(_field(sample, "task")).structure_symbols
    return [symbol not in structure for symbol in _answer_tokens(sample)]


def valid_next_tokens(sample, step: int) -> set[str]:
    """Answer symbols accepted at answer step `step` after the reference prefix (teacher forcing).

    A singleton for unique-answer tasks, the valid frontier for BREVO; at step == answer length
    it is {"<eos>"} for formats that end with one.
    """
    length = len(_answer_tokens(sample))
    if step == length and _has_eos(sample):
        return {EOS}
    if not 0 <= step < length:
        raise ValueError(f"step must be in 0..{length - 1 + _has_eos(sample)}, got {step}")
    return get_task(_field(sample, "task")).valid_next(sample, step)
