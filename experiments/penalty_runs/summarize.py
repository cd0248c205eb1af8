"""Print each run's validation probe at a few steps: accuracy and answer depth per complexity (k on DEPO, n on
BREVO; read from the log), the mean depth over all tokens, the penalty weight. The runs and their commands are in
README.md.

    python experiments/penalty_runs/summarize.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
STEPS = (1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 15000)


def complexities(row: dict) -> list[str]:
    return sorted((key.split("@")[1] for key in row if key.startswith("probe/accuracy@")), key=int)


def main() -> None:
    for path in sorted(HERE.glob("*.jsonl")):
        rows = {row["step"]: row for row in map(json.loads, path.read_text().splitlines()) if "event" not in row}
        sizes = complexities(rows[min(rows)])
        label = "/".join(sizes)
        print(f"\n{path.stem}  (last step {max(rows)})")
        print(f"  step   penalty  {'accuracy ' + label:24s}   {'answer depth ' + label:28s}   mean depth, all tokens")
        for step in [s for s in STEPS if s in rows] + ([max(rows)] if max(rows) not in STEPS else []):
            row = rows[step]
            accuracy = "/".join(f"{row[f'probe/accuracy@{c}']:.2f}" for c in sizes)
            depth = "/".join(f"{row[f'probe/depth@{c}']:.2f}" for c in sizes)
            print(f"  {step:5d}  {row['probe/compute_penalty']:.4f}   {accuracy:24s}   {depth:28s}   {row['probe/mean_depth']:.2f}")


if __name__ == "__main__":
    main()
