"""Complexity-controlled synthetic tasks (see docs/tasks.md): generators, scorers, tokenizers, datasets.

    from anira_tasks import TaskSpec, build_dataset_dict, generate_sample, load_tokenizer, score_answer

    sample = generate_sample("mano", 3, seed=0, modulus=7)          # a plain `Sample`
    tokenizer = load_tokenizer("mano")                               # tokenization/mano
    spec = TaskSpec("mano", train_sizes=[1, 2, 4], interpolation_sizes=[3], extrapolation_sizes=[5, 6],
                    task_params={"modulus": 7})
    dataset_dict = build_dataset_dict(spec, tokenizer)               # train, validation, test_*
    score_answer(dataset_dict["test_seen"][0], ["4"])                # exact match / BREVO validity

Generators are pure functions of (complexity, seed, task parameters); the tokenizer and
`datasets` layers sit on top of them.
"""

from tokenization import encode_text, encode_texts
from tokenization import load_tokenizer as _load_family_tokenizer

from .common import Sample
from .dataset import TaskSpec, build_dataset_dict, dataset_card, sample_to_row
from .registry import TASKS, Task, answer_content_mask, family_of, generate_sample, get_task, score_answer, valid_next_tokens


def load_tokenizer(task_or_family: str):
    """The shipped tokenizer of a task (e.g. "bfs") or of a family (e.g. "clrs")."""
    return _load_family_tokenizer(family_of(task_or_family))

__all__ = [
    "TASKS", "Task", "Sample", "TaskSpec", "answer_content_mask", "generate_sample", "get_task", "score_answer", "valid_next_tokens",
    "build_dataset_dict", "dataset_card", "sample_to_row", "load_tokenizer", "encode_text", "encode_texts", "family_of",
]
