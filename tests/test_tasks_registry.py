"""The task-agnostic entry points: registry names, determinism across processes, scoring API."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anira_tasks import TASKS, Sample, generate_sample, score_answer, valid_next_tokens

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"mano": 4, "brevo": 12, "depo": 3}  # CLRS tasks: 7


def test_registry_names():
    assert set(TASKS) == {"mano", "brevo", "depo", "topological_sort", "dfs", "bfs", "insertion_sort", "minimum", "binary_search"}
    assert {task.family for task in TASKS.values()} == {"mano", "brevo", "depo", "clrs"}


SCRIPT = """
import json
from anira_tasks import TASKS, generate_sample
sizes = {"mano": 4, "brevo": 12, "depo": 3}
print(json.dumps({name: [generate_sample(name, sizes.get(name, 7), seed).text for seed in range(5)] for name in sorted(TASKS)}))
"""


def test_same_seed_same_sample_in_another_process():
    other = json.loads(subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    here = {name: [generate_sample(name, SIZES.get(name, 7), seed).text for seed in range(5)] for name in sorted(TASKS)}
    assert other == here
    assert all(len(set(texts)) == 5 for texts in here.values())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sample_is_plain_data_with_aligned_annotations(task):
    sample = generate_sample(task, SIZES.get(task, 7), 1)
    assert isinstance(sample, Sample) and sample.task == task and sample.complexity == SIZES.get(task, 7)
    assert sample.text.startswith("<bos> ") and sample.text.endswith(" <eos>") == (task != "mano")
    assert sample.annotations and all(len(values) == len(sample.answer_tokens) for values in sample.annotations.values())
    row = {"task": task, "prompt": sample.prompt, "answer": sample.answer}
    assert score_answer(row, sample.answer_tokens) and score_answer(sample, " ".join(sample.answer_tokens))
    assert not score_answer(row, [])


def test_generation_is_cut_at_eos():
    sample = generate_sample("minimum", 5, 0)
    assert score_answer(sample, [sample.answer, "<eos>", "3", "3"])
    assert not score_answer(sample, ["<eos>", sample.answer])


def test_unknown_task_raises_value_error():
    with pytest.raises(ValueError, match="task"):
        generate_sample("sudoku", 3, 0)
    with pytest.raises(ValueError, match="task"):
        score_answer({"task": "sudoku", "prompt": "", "answer": ""}, [])


def test_unknown_task_parameter_raises_value_error():
    with pytest.raises(ValueError, match="modulus"):
        generate_sample("brevo", 5, 0, modulus=7)


def test_valid_next_tokens_outside_the_answer_raises():
    sample = generate_sample("mano", 2, 0)  # no <eos>: steps 0..0 only
    assert valid_next_tokens(sample, 0) == {sample.answer}
    with pytest.raises(ValueError, match="step"):
        valid_next_tokens(sample, 1)
    with pytest.raises(ValueError, match="step"):
        valid_next_tokens(sample, -1)


@pytest.mark.parametrize("seed", [None, 1.5, -1, True, "3", 2.0])
def test_seed_must_be_a_non_negative_integer(seed):
    """seed=None would give a different sample at each call; a float is not a seed."""
    for task in sorted(TASKS):
        with pytest.raises(ValueError, match="seed"):
            generate_sample(task, SIZES.get(task, 7), seed)


def test_integer_seeds_of_any_integer_type_are_accepted():
    import numpy as np

    assert generate_sample("brevo", 6, np.int64(3)).text == generate_sample("brevo", 6, 3).text
    assert generate_sample("mano", 2, 2**62).seed == 2**62


def test_answer_content_mask_leaves_out_the_clrs_layout_symbols_and_nothing_else():
    from anira_tasks import answer_content_mask

    sample = generate_sample("topological_sort", 4, seed=0)
    tokens, mask = sample.answer.split(), answer_content_mask(sample)
    assert [t for t, content in zip(tokens, mask) if not content] == ["[", "]", ",", "topo_head", ":"]
    assert [t for t, content in zip(tokens, mask) if content] == tokens[1:5] + tokens[-1:]  # the 4 pointers and the head
    assert answer_content_mask({"task": "dfs", "answer": "[ 5 49 5 33 ]"}) == [False, True, True, True, True, False]  # a dataset row
    for task in ("mano", "brevo", "depo", "minimum"):  # no layout symbols in the answer: every token is content
        other = generate_sample(task, SIZES.get(task, 7), seed=1)
        assert answer_content_mask(other) == [True] * len(other.answer.split())
