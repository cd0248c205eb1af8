"""Validation-probe curves of the BREVO accuracy runs in this folder against the shipped recipes' runs.

    python experiments/brevo_accuracy/curves.py [--every 2000]

Each `*.jsonl` here is a run's `probe_log.jsonl` (teacher-forced token accuracy on the validation split, 64 prompts
per size, every 200 steps). The baselines are the runs that made `hub_configs/anira-{fixed,early}-brevo`, whose
probe logs are in this folder too as `baseline_*.jsonl`. Columns: token accuracy at n = 3, 4, 5, 6.
A continued run counts its steps from the start of the model it continued (`fixed_continued.jsonl`: the
curriculum run's 20,000 steps, then 30,000 more), where the shipped recipe has no steps to compare with.
"""

import argparse
import json
from pathlib import Path

HERE = Path(__file__).parent
BASELINE = {"fixed": "baseline_fixed.jsonl", "e": "baseline_e.jsonl"}
RUNS = {  # run log -> (baseline, what changed against the shipped recipe)
    "fixed_curriculum.jsonl": ("fixed", "--curriculum_accuracy 0.8"),
    "fixed_continued.jsonl": ("fixed", "fixed_curriculum's model trained 30,000 steps more (new cosine from 1.5e-3, 1M rows)"),
    "fixed_weight_decay.jsonl": ("fixed", "--weight_decay 0.1 (stopped at step 7,000)"),
    "fixed_width128.jsonl": ("fixed", "width 128, head_dim 32, intermediate 256, --max_steps 12000 (stopped at step 1,800)"),
    "e_width128.jsonl": ("e", "width 128, head_dim 32, intermediate 256, --max_steps 12000 (stopped at step 1,000)"),
}


OFFSET = {"fixed_continued.jsonl": 20_000}  # steps the continued model had already trained


def load(name: str) -> dict[int, dict]:
    offset = OFFSET.get(name, 0)
    return {r["step"] + offset: r for r in map(json.loads, (HERE / name).open()) if "step" in r and "event" not in r}


def row(record: dict) -> str:
    return " ".join(f"{record.get(f'probe/accuracy@{n}', float('nan')):.2f}" for n in (3, 4, 5, 6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=2000, help="print every this many steps (and the last)")
    args = parser.parse_args()
    for name, (baseline, change) in RUNS.items():
        run, base = load(name), load(BASELINE[baseline])
        print(f"{name}: {change}\n   step   this run (n=3 4 5 6)   shipped recipe")
        for step in sorted(run):
            if step % args.every == 0 or step == max(run):
                print(f"  {step:6d}   {row(run[step])}   {row(base[step]) if step in base else ''}")
        print()


if __name__ == "__main__":
    main()
