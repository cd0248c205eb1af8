"""A complexity curriculum: train on the easiest size first, unlock the next one when the validation
probe says the current ones are learned.

Why: in k-hop lookup a model that has not yet learned one hop gets no signal from three-hop targets
(measured in `experiments/depo_formats/README.md`), while one hop is learned within a few hundred steps;
unlocking sizes in order turns the plateau into steps. The decision reads the validation probe only.
Caveat for the analysis: a curriculum makes "easy complexities are learned before hard ones" a
consequence of the schedule, so the main job's report says when one ran, and the unforced run
(`--unforced`) has none.
"""

from collections import defaultdict

import torch
from transformers import TrainerCallback

from .arguments import CURRICULUM_METRICS
from .callbacks import PROBE_PREFIX

# --curriculum_metric -> the probe's per-size key (`<prefix>@<size>`) that the unlock rule reads
SIZE_METRIC_KEYS = {"token_accuracy": f"{PROBE_PREFIX}/accuracy", "answer_exact": f"{PROBE_PREFIX}/answer_exact"}
UNLOCK_EVENT = "curriculum_unlock"


class ComplexityCurriculum(torch.utils.data.Dataset):
    """The training rows of the unlocked complexities only, uniformly over those complexities.

    Index i maps to complexity `unlocked[i % len(unlocked)]` and to a row of that complexity, so a
    random sampler over `len(self)` indices draws sizes uniformly and rows uniformly within a size.
    """

    def __init__(self, dataset, sizes: list[int], unlocked: int = 1):
        self.dataset = dataset
        self.sizes = sorted(sizes)
        self.rows = defaultdict(list)
        for index, complexity in enumerate(dataset["complexity"]):
            self.rows[complexity].append(index)
        missing = [size for size in self.sizes if not self.rows[size]]
        if missing:
            raise ValueError(f"the training split has no rows of complexity {missing}")
        self.unlocked = max(1, min(unlocked, len(self.sizes)))

    @property
    def unlocked_sizes(self) -> list[int]:
        return self.sizes[: self.unlocked]

    def __len__(self) -> int:
        return len(self.dataset)

    def row_index(self, index: int) -> int:
        """The dataset row that curriculum index `index` draws."""
        sizes = self.unlocked_sizes
        rows = self.rows[sizes[index % len(sizes)]]
        return rows[(index // len(sizes)) % len(rows)]

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.row_index(index)]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch's rows in one read of the dataset (the DataLoader's batched fetch), the rows `__getitem__` gives."""
        rows = [self.row_index(index) for index in indices]
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(rows)
        return [self.dataset[row] for row in rows]


class CurriculumCallback(TrainerCallback):
    """After each probe, unlocks the next complexity once the probe's `metric` at every unlocked size reaches
    `accuracy`; logs `curriculum/unlocked_size` (read back when training resumes) and appends a
    `curriculum_unlock` event to the probe log: the step, the size unlocked, the metric, the threshold and the
    values at the unlocked sizes that met it.

    metric: `token_accuracy` (teacher-forced accuracy over every answer token: on CLRS the structure symbols
    count, so it passes 0.8 before the answers are right) or `answer_exact` (share of prompts whose whole answer
    is right, teacher forced)."""

    def __init__(self, curriculum: ComplexityCurriculum, probe, accuracy: float, metric: str = "token_accuracy"):
        if metric not in SIZE_METRIC_KEYS:
            raise ValueError(f"curriculum metric must be one of {list(CURRICULUM_METRICS)}, got {metric!r}")
        self.curriculum, self.probe, self.accuracy, self.metric = curriculum, probe, accuracy, metric
        self.checked_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        for entry in state.log_history:  # a resumed run continues where the log says
            if "curriculum/unlocked_size" in entry:
                self.curriculum.unlocked = self.curriculum.sizes.index(int(entry["curriculum/unlocked_size"])) + 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.probe.last_step != state.global_step or self.checked_step == state.global_step:
            return
        self.checked_step = state.global_step
        curriculum = self.curriculum
        key = SIZE_METRIC_KEYS[self.metric]
        while curriculum.unlocked < len(curriculum.sizes) and all(
                self.probe.latest.get(f"{key}@{size}", 0.0) >= self.accuracy for size in curriculum.unlocked_sizes):
            values = {f"{key}@{size}": self.probe.latest[f"{key}@{size}"] for size in curriculum.unlocked_sizes}
            curriculum.unlocked += 1
            self.probe.log_event(state, UNLOCK_EVENT, {"unlocked_size": curriculum.unlocked_sizes[-1], "metric": self.metric,
                                                       "threshold": self.accuracy, "values": values})
            if self.probe.trainer is not None:
                should_log = control.should_log
                self.probe.trainer.log({"curriculum/unlocked_size": float(curriculum.unlocked_sizes[-1])})
                control.should_log = should_log
            break  # one size per probe: the new size must be learned before the next
