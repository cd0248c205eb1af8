"""A short training of a study search's candidate, with chosen sizes, depth, task parameters or learning rate.

    python experiments/learning_rate/diagnose.py --search depo-v7 --candidate single-mixed --model fixed-6 \
        --steps 4000 --output_dir OUT [--sizes 1 2] [--variant default] [--max_depth 2] [--seed 100] \
        [--task_params '{"num_queries": 6, ...}'] [-- more examples/train.py arguments]

The arguments are the search run's (`anira_study.study_search.search_args`: the candidate's data, schedule and
overrides in the variant, `COMMON_ARGS`, compiled, seed 100), with `--steps` in place of its budget (the learning-rate
schedule is this run's), the study's `--model` (`anira_study.study.MODELS`), and where given: the seen sizes `--sizes`,
the depth `--max_depth`, the task parameters updated by `--task_params`. A flag repeated after `--` takes the place of
the candidate's (`--learning_rate 1e-3`, `--per_device_train_batch_size 64`, `--curriculum_accuracy 0.8`). It reads
the validation split only: the training's probe (`probe_log.jsonl`, every 200 steps, 64 validation prompts per size).
One torch thread.
"""

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def diagnostic_argv(search: str, candidate: str, variant: str, model: str, steps: int, output_dir: Path,
                    sizes: list[int] | None = None, max_depth: int | None = None, seed: int = 100,
                    task_params: dict | None = None, extra: list[str] = ()) -> list[str]:
    from anira_study.study import write_model_folder
    from anira_study.study_search import search_args

    folder = write_model_folder(search, model, output_dir / "config")
    argv = search_args(search, candidate, variant, folder, output_dir)
    if sizes:
        start, end = argv.index("--train_sizes") + 1, argv.index("--extrapolation_sizes")
        argv[start:end] = [str(size) for size in sizes]
    argv[argv.index("--max_steps") + 1] = str(steps)
    argv[argv.index("--seed") + 1] = str(seed)
    if task_params:
        at = argv.index("--task_params") + 1
        argv[at] = json.dumps({**json.loads(argv[at]), **task_params})
    if max_depth is not None:
        argv += ["--config_overrides", f"max_depth={max_depth}"]
    return argv + list(extra)


def main() -> None:
    own, extra = (sys.argv[1:sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1:]) if "--" in sys.argv else (sys.argv[1:], [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", required=True, help="a study search, e.g. depo-v7, mano")
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--model", required=True, help="a study model, e.g. fixed-1, fixed-6, anira-e")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="the sizes trained (and probed)")
    parser.add_argument("--max_depth", type=int, default=None)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--task_params", type=json.loads, default=None, help="JSON: task parameters in place of the candidate's")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(own)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    import modeling_anira  # noqa: F401
    from anira_study.trainer import train_from_argv

    torch.set_num_threads(1)
    train_from_argv(diagnostic_argv(args.search, args.candidate, args.variant, args.model, args.steps, args.output_dir,
                                    args.sizes, args.max_depth, args.seed, args.task_params, extra))


if __name__ == "__main__":
    main()
