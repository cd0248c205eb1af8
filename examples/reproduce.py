"""Retrain a named model from scratch with its stored recipe, then write its folder (weights, card, report).

    python examples/reproduce.py anira-o-depo            # train or resume, evaluate, write hub_configs/anira-o-depo
    python examples/reproduce.py anira-o-depo --quick    # the same pipeline in minutes, into outputs/ (tests use it)
    python examples/reproduce.py anira-o-depo --work_dir DIR   # where checkpoints go (default outputs/reproduce/NAME; rerun to resume)
    python examples/reproduce.py anira-o-depo --seed 0   # another training seed, into outputs/reproduce/anira-o-depo-seed0
    python examples/reproduce.py NAME --continue_folder true   # a recipe in stages: train only the stages the folder lacks
    python examples/reproduce.py anira-e-depo --compile_model false     # the eager training forward (the default compiles)

On a GPU it trains in bf16; `--batch_scale N` multiplies batch size and learning rate. The logic lives in
`anira_study.reproduce`.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.cli import run_script
from anira_study.reproduce import reproduce


@dataclass
class ReproduceArguments:
    name: str = field(metadata={"help": "A folder of hub_configs/ with a recipe.json, e.g. anira-o-depo."})
    quick: bool = field(default=False, metadata={"help": "A few minutes' version of the recipe, written under outputs/."})
    work_dir: str | None = field(default=None, metadata={"help": "Training folder (checkpoints); default outputs/reproduce/<name>."})
    target: str | None = field(default=None, metadata={"help": "Folder to write (default hub_configs/<name>, or under work_dir with --quick)."})
    hub_dir: str = field(default="hub_configs")
    batch_scale: int = field(default=1, metadata={"help": "Multiply batch size and learning rate (e.g. on a GPU)."})
    seed: int | None = field(default=None, metadata={"help": "Train with this seed instead of the recipe's; written under outputs/ unless --target."})
    compile_model: bool | None = field(default=None, metadata={
        "help": "Train with the compiled training forward (true) or the eager one (false) whatever the recipe stored: "
                "equal within float rounding, 1.3-1.6 x the steps per second on CPU (docs/training.md). Default: compiled "
                "on a CPU with a C++ compiler where the model compiles as one graph, else eager (said when it starts, "
                "and in the card); false retrains an eager recipe bit for bit on the machine that trained it."})
    continue_folder: bool = field(default=False, metadata={
        "help": "Take the stages the folder's model already finished from the folder (weights, log, wall time) and train "
                "only the recipe's later stages (for a recipe that gained a stage after its checkpoints were lost)."})


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and not argv[0].startswith("--"):
        argv = ["--name", *argv]
    (args,) = HfArgumentParser(ReproduceArguments).parse_args_into_dataclasses(args=argv)
    return reproduce(args.name, args.hub_dir, args.work_dir, args.target, args.quick, args.batch_scale, args.seed,
                     args.continue_folder, args.compile_model)


if __name__ == "__main__":
    run_script(main, "reproduce.py")
