"""Does padding-free training learn as padded training does? Two runs of one recipe, `--padding_free true` and
`false`, everything else equal; this prints their validation probe side by side at every probe step.

    python benchmarks/model/packing_curve.py --recipe anira-o-brevo --max_steps 2000 --work_dir outputs/packing_curve
    python benchmarks/model/packing_curve.py --compare_only --work_dir outputs/packing_curve   # the table from the logs

The two runs see the same samples in the same order (the Trainer's sampler depends on the seed only); packed
and padded batches give the same loss and gradients up to float32 rounding (tests/test_packing.py checks it in
float64), so the curves should agree up to that rounding, amplified by training. The runs are started one per
core.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARMS = ("true", "false")


def train(recipe: str, max_steps: int, num_train: int, work_dir: Path) -> None:
    args = json.loads((REPO / "hub_configs" / recipe / "recipe.json").read_text())["train_args"]
    for flag, value in (("--max_steps", str(max_steps)), ("--num_train", str(num_train))):
        args[args.index(flag) + 1] = value
    processes = []
    for arm in ARMS:
        out = work_dir / f"padding_free_{arm}"
        command = [sys.executable, "examples/train.py", *args, "--padding_free", arm, "--output_dir", str(out)]
        log = open(work_dir / f"{arm}.log", "w")
        processes.append(subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                          env={"OMP_NUM_THREADS": "1", **dict(__import__("os").environ)}))
    for process in processes:
        if process.wait():
            raise SystemExit(f"a training run failed: see {work_dir}/*.log")


def compare(work_dir: Path) -> str:
    logs = {arm: [json.loads(line) for line in (work_dir / f"padding_free_{arm}" / "probe_log.jsonl").read_text().splitlines()]
            for arm in ARMS}
    sizes = sorted({k.split("@")[1] for record in logs["true"] for k in record if k.startswith("probe/accuracy@")}, key=int)
    lines = ["| step | " + " | ".join(f"accuracy n={n} packed / padded" for n in sizes) + " | answer depth packed / padded |",
             "|---" * (len(sizes) + 2) + "|"]
    padded = {r["step"]: r for r in logs["false"]}
    for record in logs["true"]:
        other = padded.get(record["step"])
        if other is None:
            continue
        cells = [f"{record.get(f'probe/accuracy@{n}', float('nan')):.2f} / {other.get(f'probe/accuracy@{n}', float('nan')):.2f}"
                 for n in sizes]
        depth = f"{record['probe/answer_depth']:.2f} / {other['probe/answer_depth']:.2f}"
        lines.append(f"| {record['step']} | " + " | ".join(cells) + f" | {depth} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="anira-o-brevo")
    parser.add_argument("--max_steps", type=int, default=2000)
    parser.add_argument("--num_train", type=int, default=40000)
    parser.add_argument("--work_dir", default="outputs/packing_curve")
    parser.add_argument("--compare_only", action="store_true")
    args = parser.parse_args()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not args.compare_only:
        train(args.recipe, args.max_steps, args.num_train, work_dir)
    print(compare(work_dir))


if __name__ == "__main__":
    main()
