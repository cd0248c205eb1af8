"""The first steps of a study run, exactly as its grid trains it, or with extra `examples/train.py` arguments.

    python experiments/o_depth_collapse/train_variant.py --task brevo --model anira-o --seed 0 --stop 1000 \
        --output_dir OUT [--save_steps 50] [-- --config_overrides iteration_loss_weight=0.0]

The run's arguments are the study's (`anira_study.study.training_args`: the grid's data, schedule over its full step
budget, seed), with the eager training forward (bit for bit the v1 runs that trained eager) and checkpoints every
`--save_steps`; training stops once checkpoint `--stop` is written, so the learning-rate schedule is the full run's,
not one shortened to `--stop` steps. Whatever follows `--` is appended to the arguments. A folder that already
holds checkpoints resumes from its last (pass `--resume_from_checkpoint last` after `--`).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def study_argv(task: str, model: str, seed: int, output_dir: Path, save_steps: int, extra: list[str]) -> list[str]:
    from anira_study import study

    argv = study.training_args(task, model, seed, study.write_model_folder(task, model, output_dir / "config"), output_dir)
    argv[argv.index("--save_steps") + 1] = str(save_steps)
    if "--compile_model" in argv:
        argv[argv.index("--compile_model") + 1] = "false"
    return argv + extra


def main() -> None:
    own, extra = (sys.argv[1:sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1:]) if "--" in sys.argv else (sys.argv[1:], [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--stop", type=int, required=True, help="stop once this step's checkpoint is written")
    parser.add_argument("--save_steps", type=int, default=200)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(own)
    argv = study_argv(args.task, args.model, args.seed, args.output_dir, args.save_steps, extra)
    if args.child:  # the training itself, one torch thread
        import torch

        import modeling_anira  # noqa: F401
        from anira_study.trainer import train_from_argv

        torch.set_num_threads(1)
        train_from_argv(argv)
        return
    child = subprocess.Popen([sys.executable, __file__, *own, "--child", "--", *extra], cwd=REPO,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    target = args.output_dir / f"checkpoint-{args.stop}"
    while not target.exists() and child.poll() is None:
        time.sleep(5)
    if child.poll() is None:
        time.sleep(5)  # let the checkpoint finish writing
        child.terminate()
        child.wait()
    print(f"{args.output_dir}: stopped at {'checkpoint-' + str(args.stop) if target.exists() else 'exit ' + str(child.returncode)}")


if __name__ == "__main__":
    main()
