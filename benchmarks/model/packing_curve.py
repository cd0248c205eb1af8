"""Does a training-path switch change what a recipe learns? Two runs of one recipe, the switch on (`true`) and off
(`false`), everything else equal; this prints their validation probe side by side at every probe step.

    python benchmarks/model/packing_curve.py --recipe anira-o-brevo --max_steps 2000 --work_dir outputs/packing_curve
    python benchmarks/model/packing_curve.py --compare_only --work_dir outputs/packing_curve   # the table from the logs
    python benchmarks/model/packing_curve.py --switch compile_model --work_dir outputs/compile_curve

`--switch padding_free` (the default): packed against padded batches; `--switch compile_model`: the compiled training
forward against the eager one (both packed, the recipes' default). The two runs see the same samples in the same order
(the Trainer's sampler depends on the seed only); either switch gives the same loss and gradients up to float32
rounding (tests/test_packing.py, tests/test_compile_model.py), so the curves should agree up to that rounding,
amplified by training. The runs are started one per core.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARMS = ("true", "false")
SWITCHES = {"padding_free": ("packed", "padded"), "compile_model": ("compiled", "eager")}


def train(recipe: str, switch: str, max_steps: int, num_train: int, work_dir: Path) -> None:
    args = json.loads((REPO / "hub_configs" / recipe / "recipe.json").read_text())["train_args"]
    for flag, value in (("--max_steps", str(max_steps)), ("--num_train", str(num_train))):
        args[args.index(flag) + 1] = value
    processes = []
    for arm in ARMS:
        out = work_dir / f"{switch}_{arm}"
        command = [sys.executable, "examples/train.py", *args, f"--{switch}", arm, "--output_dir", str(out)]
        log = open(work_dir / f"{arm}.log", "w")
        processes.append(subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                          env={"OMP_NUM_THREADS": "1", **os.environ}))
    for process in processes:
        if process.wait():
            raise SystemExit(f"a training run failed: see {work_dir}/*.log")


def compare(work_dir: Path, switch: str) -> str:
    logs = {arm: [json.loads(line) for line in (work_dir / f"{switch}_{arm}" / "probe_log.jsonl").read_text().splitlines()]
            for arm in ARMS}
    on, off = SWITCHES[switch]
    sizes = sorted({k.split("@")[1] for record in logs["true"] for k in record if k.startswith("probe/accuracy@")}, key=int)
    lines = ["| step | " + " | ".join(f"accuracy n={n} {on} / {off}" for n in sizes) + f" | answer depth {on} / {off} |",
             "|---" * (len(sizes) + 2) + "|"]
    others = {r["step"]: r for r in logs["false"]}
    for record in logs["true"]:
        other = others.get(record["step"])
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
    parser.add_argument("--switch", default="padding_free", choices=sorted(SWITCHES))
    parser.add_argument("--max_steps", type=int, default=2000)
    parser.add_argument("--num_train", type=int, default=40000)
    parser.add_argument("--work_dir", default="outputs/packing_curve")
    parser.add_argument("--compare_only", action="store_true")
    args = parser.parse_args()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not args.compare_only:
        train(args.recipe, args.switch, args.max_steps, args.num_train, work_dir)
    print(compare(work_dir, args.switch))


if __name__ == "__main__":
    main()
