"""Print the iteration-loss runs' validation probe at a few steps next to the plain-loss runs of the same
recipe: accuracy and answer depth per complexity (DEPO: k; BREVO: n), the penalty weight.

    python experiments/iteration_loss/summarize.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
RUNS = {
    "ANIRA-E, iteration loss 0.5": HERE / "e_iteration0.5.jsonl",
    "ANIRA-E, plain loss (shipped before)": HERE.parent / "penalty_runs" / "e_shipped_gate0.9.jsonl",
    "ANIRA-O, iteration loss 0.5 (seed 2)": HERE / "o_iteration0.5.jsonl",
    "ANIRA-O, plain loss (seed 2, shipped before)": HERE.parent / "penalty_runs" / "o_seed2_gate0.9.jsonl",
    "fixed, iteration loss 0.5": HERE / "fixed_iteration0.5.jsonl",
    "BREVO ANIRA-E, iteration loss 0.5": HERE / "brevo_e_iteration0.5.jsonl",
    "BREVO ANIRA-E, plain loss (shipped)": HERE / "brevo_e_plain.jsonl",
    "BREVO ANIRA-O, iteration loss 0.5": HERE / "brevo_o_iteration0.5.jsonl",
    "BREVO ANIRA-O, plain loss (shipped)": HERE / "brevo_o_plain.jsonl",
}
STEPS = (1000, 2000, 3000, 4000, 6000, 8000, 10000, 15000)


def main() -> None:
    for title, path in RUNS.items():
        if not path.exists():
            print(f"\n{title}: {path.name} not found")
            continue
        rows = {row["step"]: row for row in map(json.loads, path.read_text().splitlines()) if "event" not in row}
        print(f"\n{title}  ({path.name}, last step {max(rows)})")
        sizes = sorted({int(key.split("@")[1]) for row in rows.values() for key in row if key.startswith("probe/accuracy@")})
        names = "/".join(map(str, sizes))
        print(f"  step   penalty  accuracy at {names:14s} answer depth at {names}")
        for step in [s for s in STEPS if s in rows] + ([max(rows)] if max(rows) not in STEPS else []):
            row = rows[step]
            accuracy = "/".join(f"{row[f'probe/accuracy@{k}']:.2f}" if f"probe/accuracy@{k}" in row else " -- " for k in sizes)
            depth = "/".join(f"{row[f'probe/depth@{k}']:.2f}" if f"probe/depth@{k}" in row else " -- " for k in sizes)
            print(f"  {step:5d}  {row['probe/compute_penalty']:.4f}   {accuracy:26s}   {depth}")


if __name__ == "__main__":
    main()
