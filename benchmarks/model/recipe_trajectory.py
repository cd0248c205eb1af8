"""A recipe's training throughput over its whole run: each arm timed at the weights of checkpoints spread over one
real training run, so the depths (and with them the work per step) are those the run went through.

    python benchmarks/model/recipe_trajectory.py --run outputs/study/brevo/anira-o-seed0 --base ../anira-b4e93e0 \
        --json benchmarks/model/recipe_trajectory_anira_o_brevo.json

For each checkpoint at the middle of an equal stretch of the run (`--every` steps: 2,000, 6,000, ... for 4,000), and
for fresh weights, `bench_recipe_throughput.py --weights <checkpoint> ...` runs twice per repetition: once on the
`--base` checkout (its padded eager path) and once on this one with `--compile_model` (padded, packed, packed +
compiled model), the two alternating first. Each checkpoint stands for the `--every` steps around it (the midpoint
rule), so the run's CPU time on an arm is the sum over checkpoints of its median step time times `--every`, and the
whole-run speed-up is the base's sum over the arm's. The batches are the recipe's (all its sizes in the recipe's mix),
not the run's curriculum-restricted ones; the weights set each token's depth. One torch thread; time it on a quiet
machine.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE / "bench_recipe_throughput.py"


def bench(weights: list[str], steps: int, warmup: int, repo: Path | None, out: Path, recipe: str) -> list[dict]:
    command = [sys.executable, str(BENCH), "--recipes", recipe, "--weights", *weights, "--steps", str(steps),
               "--warmup", str(warmup), "--json", str(out)]
    command += ["--repo", str(repo)] if repo else ["--compile_model"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a training run's folder holding checkpoint-N folders")
    parser.add_argument("--base", required=True, help="the checkout of the path to compare against (e.g. b4e93e0)")
    parser.add_argument("--recipe", default="anira-o-brevo", help="the hub_configs recipe whose batches and losses are timed")
    parser.add_argument("--every", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    run = Path(args.run)
    last = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    points = list(range(args.every // 2, last + 1, args.every))
    missing = [p for p in points if not (run / f"checkpoint-{p}").is_dir()]
    if missing:
        parser.error(f"{run} lacks checkpoint-{missing[0]} (the midpoints of {args.every}-step stretches up to {last})")
    weights = ["init"] + [str(run / f"checkpoint-{p}") for p in points]
    out = Path(args.json)
    reps = []
    for rep in range(args.repeats):
        order = ("base", "new") if rep % 2 == 0 else ("new", "base")
        done = {}
        for which in order:
            done[which] = bench(weights, args.steps, args.warmup, Path(args.base) if which == "base" else None,
                                out.with_suffix(f".{which}{rep}.json"), args.recipe)
        reps.append(done)
    rows = []
    for i, w in enumerate(weights):
        base = [r["base"][i]["padded"]["step_ms"] for r in reps]
        new = {arm: [r["new"][i][arm]["step_ms"] for r in reps] for arm in ("padded", "packed", "whole")}
        rows.append({"weights": "init" if w == "init" else int(w.rsplit("-", 1)[1]), "base_ms": base, **{f"{a}_ms": v for a, v in new.items()},
                     "whole_equal_depths": all(r["new"][i]["whole"]["depths_equal"] for r in reps)})
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    stretch = [r for r in rows if r["weights"] != "init"]
    total = {key: sum(mean(r[f"{key}_ms"]) for r in stretch) * args.every / 1000 for key in ("base", "packed", "whole")}
    result = {"run": str(run), "recipe": args.recipe, "every": args.every, "steps_per_arm": args.steps, "repeats": args.repeats,
              "rows": rows, "run_cpu_s": total,
              "whole_run_speedup": {"packed": total["base"] / total["packed"], "compiled": total["base"] / total["whole"]}}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| weights | base padded ms | packed ms | packed + compiled model ms | compiled over base |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {mean(r['base_ms']):.1f} | {mean(r['packed_ms']):.1f} | {mean(r['whole_ms']):.1f} | "
              f"{mean(r['base_ms']) / mean(r['whole_ms']):.2f} |")
    print(f"whole run ({stretch[-1]['weights'] + args.every // 2} steps): base {total['base'] / 60:.0f} min, "
          f"packed {total['packed'] / 60:.0f} min, compiled {total['whole'] / 60:.0f} min of one "
          f"core; speed-up {result['whole_run_speedup']['packed']:.2f} x packed, {result['whole_run_speedup']['compiled']:.2f} x compiled")


if __name__ == "__main__":
    main()
