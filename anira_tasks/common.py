"""What every task shares: the `Sample` record, the special symbols and the parameter checks.

A task generator is a pure function of (complexity, seed, task parameters) returning a `Sample`
of plain Python data; tokenizers and `datasets` sit on top of it (see `anira_tasks.dataset`).

Text conventions (decisions where docs/tasks.md is silent):
- Every sample is one line of space-separated symbols that starts with `<bos>`.
- `prompt` is everything up to and including the symbol after which the answer starts
  (`=` for MANO, `<ans>` for BREVO and DEPO, the first output name's `:` for CLRS).
- `answer` is the answer symbols only. Every format except MANO then ends with `<eos>` so that
  free generation knows where to stop; MANO keeps the exact docs/tasks.md format (its answer is always a
  single symbol, no `<eos>`). `text = prompt + " " + answer (+ " <eos>")`.
- `annotations[name][k]` belongs to answer symbol k, i.e. to the position that *predicts* it.
"""

import numbers
from dataclasses import dataclass, field
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_SYMBOLS = [PAD, BOS, EOS, UNK]  # ids 0..3 in every family's tokenizer, in this order


@dataclass
class Sample:
    task: str
    complexity: int
    seed: int
    prompt: str
    answer: str
    annotations: dict[str, list[int]]
    has_eos: bool = True
    # Prompt symbols that are supervised too (labels on them): DEPO's solved earlier queries when
    # `supervise_all_queries` is on. Indices into prompt.split(); empty for every other task.
    prompt_label_positions: list[int] = field(default_factory=list)
    # The symbols those positions are labelled with, where they are not the prompt's own (DEPO's earlier queries
    # with `show_solved_answers=False`: the answer is the label, not the input); empty: the prompt's symbols.
    prompt_label_symbols: list[str] = field(default_factory=list)
    # Whatever the scorer needs besides prompt/answer (e.g. BREVO's edges); plain data only.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.answer}" + (f" {EOS}" if self.has_eos else "")

    @property
    def answer_tokens(self) -> list[str]:
        return self.answer.split()


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Reject bad parameters with a message that names them (a bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_seed(seed: Any) -> int:
    """A sample seed: a non-negative integer (None would draw a fresh sample each call, a float is not a seed)."""
    return check_int("seed", seed, 0)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
