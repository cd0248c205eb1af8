"""What a training step spends assembling its batch: reading the rows the sampler drew through the size curriculum
(`anira_study.curriculum.ComplexityCurriculum`) and packing them (`anira_study.data.PackedAnswerCollator`), per batch,
one torch thread, CPU time of this process.

    python benchmarks/model/bench_batch_assembly.py                                  # this checkout
    python benchmarks/model/bench_batch_assembly.py --before PATH/TO/older/checkout  # and another's, alternating

The rows are the recipe's training split with every seen size unlocked, the batches drawn with a fixed seed, as many
rows as the recipe's `per_device_train_batch_size`. Reading runs through the DataLoader's own fetch rule (a dataset's
`__getitems__` when it has one, else row by row). With `--before`, that checkout's curriculum and collator run on
the same batches, arms alternating batch by batch, and every packed batch is checked equal to this checkout's.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_from(checkout: Path, module: str):
    """`anira_study.<module>` of another checkout, loaded under a private name (its relative imports resolved to
    this checkout's package, whose other modules the two share)."""
    path = checkout / "anira_study" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"anira_study._before_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    loaded.__package__ = "anira_study"
    spec.loader.exec_module(loaded)
    return loaded


def fetch(dataset, indices: list[int]) -> list[dict]:
    """The DataLoader's fetch rule (torch.utils.data._utils.fetch._MapDatasetFetcher)."""
    if getattr(dataset, "__getitems__", None):
        return dataset.__getitems__(indices)
    return [dataset[i] for i in indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="anira-o-brevo")
    parser.add_argument("--num_train", type=int, default=20000, help="training rows built to draw from")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--before", help="an older checkout whose curriculum and collator run beside this one's")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from anira_study.curriculum import ComplexityCurriculum
    from anira_study.data import PackedAnswerCollator
    from bench_recipe_throughput import recipe_setup

    _, tokenizer, train, training_args = recipe_setup(args.recipe, args.num_train, "init")
    sizes = sorted(set(train["complexity"]))
    arms = {"now": (ComplexityCurriculum(train, sizes, unlocked=len(sizes)), PackedAnswerCollator(tokenizer.pad_token_id))}
    if args.before:
        curriculum, data = load_from(Path(args.before), "curriculum"), load_from(Path(args.before), "data")
        arms["before"] = (curriculum.ComplexityCurriculum(train, sizes, unlocked=len(sizes)),
                          data.PackedAnswerCollator(tokenizer.pad_token_id))
    generator = torch.Generator().manual_seed(0)
    size = training_args.per_device_train_batch_size
    batches = [torch.randint(0, len(train), (size,), generator=generator).tolist() for _ in range(args.batches)]
    times = {arm: {"fetch": [], "collate": []} for arm in arms}
    for n, indices in enumerate(batches):
        packed = {}
        for arm in (list(arms) if n % 2 == 0 else list(reversed(arms))):
            dataset, collator = arms[arm]
            start = time.process_time()
            rows = fetch(dataset, indices)
            fetched = time.process_time()
            packed[arm] = collator(rows)
            times[arm]["fetch"].append(fetched - start)
            times[arm]["collate"].append(time.process_time() - fetched)
        if "before" in packed:
            assert all(torch.equal(packed["now"][k], packed["before"][k]) for k in packed["now"]), f"batch {n} differs"
    result = {"recipe": args.recipe, "batch": size, "batches": args.batches, "torch": torch.__version__,
              "arms": {arm: {part: 1000 * statistics.median(values) for part, values in parts.items()}
                       for arm, parts in times.items()}}
    print(f"{args.recipe}, batches of {size} rows, median CPU ms per batch over {args.batches} (1 thread)")
    print("| arm | read the rows | pack them | both |")
    print("|---|---|---|---|")
    for arm, parts in result["arms"].items():
        print(f"| {arm} | {parts['fetch']:.2f} | {parts['collate']:.2f} | {parts['fetch'] + parts['collate']:.2f} |")
    if args.before:
        print("every packed batch equal in both arms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
