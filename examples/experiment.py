"""The main job: a small, complete complexity-controlled experiment on CPU in under 10 minutes.

    python examples/experiment.py                                    # the defaults (anira_study.experiment)
    python examples/experiment.py --max_steps 200 --output_dir outputs/quick  # a faster smoke run
    python examples/experiment.py --unforced true --output_dir outputs/unforced   # nothing forces the phases

Trains ANIRA-E (early depth decision) and ANIRA-O (online halting) side by side (one process each) on the
same task and data for a fixed number of steps, evaluates both once on held-out test prompts of the training
sizes (seen) and of larger sizes (unseen), prints per complexity the accuracy and the mean depth at the
positions that predict answer tokens with 95 % intervals, rho(depth, complexity) with a bootstrap interval,
and the findings; writes `report.json`, `complexity.png` and `training_dynamics.png` to `--output_dir`.
Before all that it shows the replicated study's answer on the task (`--study_dir`, default experiments/study:
seed 0 beside the range over seeds), or says that the study's runs are pending.
"""

import time

PROCESS_START = time.time()  # the 10-minute budget counts imports too

from transformers import HfArgumentParser  # noqa: E402

from anira_study.cli import run_script  # noqa: E402
from anira_study.experiment import ExperimentArguments, run_experiment  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(ExperimentArguments).parse_args_into_dataclasses(args=argv)
    return run_experiment(args, job_start=PROCESS_START)


if __name__ == "__main__":
    run_script(main, "experiment.py")  # a user mistake: one line that names it, not a traceback
