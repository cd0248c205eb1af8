"""Build a task's DatasetDict, save it with `save_to_disk`, optionally push it to the Hub.

    python examples/make_datasets.py --task mano --train_sizes 1 2 3 4 --extrapolation_sizes 5 6 \
        --task_params '{"modulus": 7}' --output_dir outputs/datasets/mano
    python examples/make_datasets.py --task brevo --push_to_hub your-name/anira-brevo

Sizes left out take the task's defaults below. The dataset card (README.md next to the saved
splits, and on the Hub) describes the task, its knob and the splits.
"""

import json
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from anira_study.cli import run_script
from anira_tasks import TASKS, TaskSpec, build_dataset_dict, dataset_card

# task -> (train sizes, interpolation sizes, extrapolation sizes); CPU-friendly defaults.
DEFAULT_SIZES = {
    "mano": ([1, 2, 3, 4], [], [5, 6, 8]),
    "brevo": (list(range(3, 17)), [], [20, 24, 30]),
    "depo": ([1, 2, 3, 4], [], [5, 6, 8]),
    **{name: ([4, 5, 7, 10, 12], [6, 8, 9, 11], [14, 16, 20]) for name in TASKS if TASKS[name].family == "clrs"},
}


@dataclass
class MakeDatasetArguments:
    task: str = field(metadata={"help": f"one of {sorted(TASKS)}"})
    train_sizes: list[int] | None = field(default=None, metadata={"help": "complexities seen in training"})
    interpolation_sizes: list[int] | None = field(default=None, metadata={"help": "held-out complexities inside the training range"})
    extrapolation_sizes: list[int] | None = field(default=None, metadata={"help": "complexities above the training range"})
    num_train: int = 10_000
    num_validation: int = 500
    num_test_per_size: int = 200
    seed: int = 0
    task_params: str = field(default="{}", metadata={"help": 'JSON, e.g. \'{"modulus": 7}\' for mano'})
    output_dir: str | None = field(default=None, metadata={"help": "default: outputs/datasets/<task>"})
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub dataset repo id to upload to"})
    private: bool = False
    num_proc: int | None = field(default=None, metadata={"help": "worker processes that build the training split "
                                                           "(default: one per CPU core; 1: in this process); the data do not depend on it"})


def main(argv: list[str] | None = None):
    (args,) = HfArgumentParser(MakeDatasetArguments).parse_args_into_dataclasses(args=argv)
    if args.task not in DEFAULT_SIZES:
        raise ValueError(f"--task must be one of {sorted(TASKS)}, got {args.task!r}")
    try:
        task_params = json.loads(args.task_params)
    except json.JSONDecodeError as error:
        raise ValueError(f"--task_params is not valid JSON ({error.msg}): {args.task_params!r}") from None
    if not isinstance(task_params, dict):
        raise ValueError(f"--task_params must be a JSON object, got {args.task_params!r}")
    if args.num_proc is not None and args.num_proc < 1:
        raise ValueError(f"--num_proc must be >= 1, got {args.num_proc}")
    default_train, default_interpolation, default_extrapolation = DEFAULT_SIZES[args.task]
    spec = TaskSpec(
        task=args.task,
        train_sizes=args.train_sizes or default_train,
        interpolation_sizes=args.interpolation_sizes if args.interpolation_sizes is not None else (default_interpolation if args.train_sizes is None else []),
        extrapolation_sizes=args.extrapolation_sizes if args.extrapolation_sizes is not None else (default_extrapolation if args.train_sizes is None else []),
        num_train=args.num_train,
        num_validation=args.num_validation,
        num_test_per_size=args.num_test_per_size,
        seed=args.seed,
        task_params=task_params,
    )
    spec.validate()  # sizes, counts and task parameters, before anything is built
    dataset_dict = build_dataset_dict(spec, num_proc=args.num_proc)
    card = dataset_card(spec, dataset_dict)
    output_dir = args.output_dir or f"outputs/datasets/{args.task}"
    dataset_dict.save_to_disk(output_dir)
    with open(f"{output_dir}/README.md", "w") as f:
        f.write(card)
    print(dataset_dict)
    print(f"saved to {output_dir}")
    if args.push_to_hub:
        from huggingface_hub import DatasetCard

        dataset_dict.push_to_hub(args.push_to_hub, private=args.private)
        # push_to_hub writes a card with the dataset_info metadata; keep that, add our description.
        hub_card = DatasetCard.load(args.push_to_hub, repo_type="dataset")
        hub_card.text = card
        hub_card.push_to_hub(args.push_to_hub, repo_type="dataset")
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    return dataset_dict


if __name__ == "__main__":
    run_script(main, "make_datasets.py")  # a user mistake: one line that names it, not a traceback
