"""Print, per shipped recipe, the test results of every training seed run: the shipped model (its folder's
report.json) and the other seeds (`<model>_seed<S>_report.json` here, written by `examples/evaluate_models.py`); then
the runs of the recipe plus a depth hold (`<model>_<variant>_seed<S>_report.json`, VARIANTS below).

    python experiments/seeds/summarize.py

Per size: accuracy of the greedily generated answer with its 95 % interval, and mean depth at the answer
positions; then Spearman's rho(depth, size) on the seen sizes with its bootstrap interval and the number of
prompts it rests on (the test prompts are the same for every seed: the task data does not depend on it).
"""

import json
import re
from pathlib import Path

HERE = Path(__file__).parent
HUB = HERE.parents[1] / "hub_configs"
VARIANTS = {  # file-name tag -> the arguments added to the shipped recipe
    "hold": "--depth_hold_accuracy 0.9",
    "hold2500": "--depth_hold_accuracy 0.9 --depth_hold_steps 2500",
}


def shipped_seed(name: str) -> int:
    argv = json.loads((HUB / name / "recipe.json").read_text())["train_args"]
    return int(argv[argv.index("--seed") + 1])


def runs(variant: str = "") -> dict[str, dict[int, dict]]:
    """{model name: {seed: evaluation report}} for every model with a seed run here; `variant` "" is the shipped
    recipe (its shipped seed included), else a key of VARIANTS."""
    found: dict[str, dict[int, dict]] = {}
    for path in sorted(HERE.glob("*_seed*_report.json")):
        short, tag, seed = re.fullmatch(rf"(.+?)(?:_({'|'.join(VARIANTS)}))?_seed(\d+)_report", path.stem).groups()
        if (tag or "") != variant:
            continue
        (report,) = json.loads(path.read_text())["reports"].values()
        found.setdefault(f"anira-{short}", {})[int(seed)] = report
    if not variant:
        for name, reports in found.items():
            reports[shipped_seed(name)] = json.loads((HUB / name / "report.json").read_text())["report"]
    return found


def row(report: dict) -> str:
    cells = []
    for split in ("test_seen", "test_extrapolation"):
        for size, values in report.get(split, {}).get("per_complexity", {}).items():
            low, high = values["intervals"]["generated_accuracy"]
            cells.append(f"{size}: {values['generated_accuracy']:.2f} [{low:.2f}, {high:.2f}] @ {values['mean_depth']:.2f}")
    seen = report["test_seen"]
    rho, (low, high) = seen["spearman"], seen["spearman_interval"]
    rho_text = "undefined (the same depth everywhere)" if rho != rho else f"{rho:.2f} [{low:.2f}, {high:.2f}]"
    return "  ".join(cells) + f"  rho seen {rho_text}, n = {seen['items']}"


def main() -> None:
    for name, reports in runs().items():
        print(f"\n{name} (shipped: seed {shipped_seed(name)}); size: accuracy @ mean answer depth, test split")
        for seed in sorted(reports):
            print(f"  seed {seed}{' (shipped)' if seed == shipped_seed(name) else ''}:  {row(reports[seed])}")
    for variant, arguments in VARIANTS.items():
        for name, reports in runs(variant).items():
            print(f"\n{name} recipe + {arguments}; size: accuracy @ mean answer depth, test split")
            for seed in sorted(reports):
                print(f"  seed {seed}:  {row(reports[seed])}")


if __name__ == "__main__":
    main()
