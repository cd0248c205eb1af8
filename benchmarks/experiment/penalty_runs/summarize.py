"""Print each run's validation probe at a few steps: accuracy and answer depth per k, the mean depth over all
tokens, the penalty weight. The runs and their commands are in README.md.

    python benchmarks/experiment/penalty_runs/summarize.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
STEPS = (1000, 2000, 4000, 6000, 8000, 10000, 15000)


def main() -> None:
    for path in sorted(HERE.glob("*.jsonl")):
        rows = {row["step"]: row for row in map(json.loads, path.read_text().splitlines())}
        print(f"\n{path.stem}  (last step {max(rows)})")
        print("  step   penalty  accuracy k=1/2/3     answer depth k=1/2/3   mean depth, all tokens")
        for step in [s for s in STEPS if s in rows] + ([max(rows)] if max(rows) not in STEPS else []):
            row = rows[step]
            accuracy = "/".join(f"{row[f'probe/accuracy@{k}']:.2f}" for k in (1, 2, 3))
            depth = "/".join(f"{row[f'probe/depth@{k}']:.2f}" for k in (1, 2, 3))
            print(f"  {step:5d}  {row['probe/compute_penalty']:.4f}   {accuracy:18s}   {depth:20s}   {row['probe/mean_depth']:.2f}")


if __name__ == "__main__":
    main()
