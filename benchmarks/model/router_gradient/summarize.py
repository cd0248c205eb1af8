"""Summarise run.sh's two trainings: training time, when each k was learned, and the final validation probe.

    python benchmarks/model/router_gradient/summarize.py outputs/router_gradient
"""

import json
import sys
from pathlib import Path


def main(out: str) -> None:
    print("| router_gradient | wall (s) | CPU user (s) | first step with validation accuracy >= 0.8 at k = 1 / 2 / 3 "
          "| final validation accuracy k = 1 / 2 / 3 | final answer depth k = 1 / 2 / 3 |")
    print("|---|---|---|---|---|---|")
    for estimator in ("full", "next"):
        run = Path(out) / estimator
        wall, user = (Path(out) / f"{estimator}.time").read_text().split()
        log = [row for row in map(json.loads, (run / "probe_log.jsonl").read_text().splitlines()) if "event" not in row]
        sizes = sorted(int(k.split("@")[1]) for k in log[-1] if k.startswith("probe/accuracy@"))
        learned = [next((row["step"] for row in log if row.get(f"probe/accuracy@{k}", 0) >= 0.8), None) for k in sizes]
        final = log[-1]
        accuracy = " / ".join(f"{final['probe/accuracy@' + str(k)]:.2f}" for k in sizes)
        depth = " / ".join(f"{final['probe/depth@' + str(k)]:.2f}" for k in sizes)
        steps = " / ".join(str(s) if s else "-" for s in learned)
        print(f"| {estimator} | {float(wall):.0f} | {float(user):.0f} | {steps} | {accuracy} | {depth} |")

if __name__ == "__main__":
    main(sys.argv[1])
