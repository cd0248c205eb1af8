"""Depth-wise batched decoding of this checkout against another checkout's (an older commit), taking turns in one run.

    git worktree add ../anira-base <commit>            # the older DepthBatcher
    python benchmarks/inference/compare_depth_batching.py --base ../anira-base [--rounds 8] [--per_size 500]

Two worker processes, one per checkout, each importing that checkout's `modeling_anira`; everything else (this
folder's bench_depth_batching.py and bench_eval.py, anira_study, the models in hub_configs) is this checkout's in
both, so only the model code differs. They take turns on the same workloads, who goes first alternating from call to
call, so that the machine's load hits both alike:

- `fixed`: bench_depth_batching.py's fixed batch of 8 random 32-token prompts (its draw for batch 8), 32 processed
  tokens each, fed fixed random continuations (`forced`, through a logits processor in DepthBatcher) or the greedy
  choices (`greedy`): the lockstep generate() loop, and DepthBatcher with min_coda_rows 1 and 4 (B/2);
- `eval`: bench_eval.py's BREVO evaluation, `generated_correct` over `--per_size` test prompts per size through
  generate() and through DepthBatcher (depth_batching=True), in chunks of `--chunk` prompts.

CPU time of each call (time.process_time, one torch thread), after one warm-up round; reported: the median over the
rounds per checkout and method, the new/base ratio of those medians, and within each checkout the depth batcher's
median over the lockstep's (fixed) or generate()'s (eval). Every call of a workload must give the same tokens and
depths (fixed) or the same number of correct answers (eval) in both checkouts and both methods; the run stops otherwise.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ["anira-o-brevo", "anira-e-brevo"]
FIXED = [(method, continuation) for continuation in ("forced", "greedy") for method in ("lockstep", "depth/k=1", "depth/k=4")]


def worker(repo: str, per_size: int, chunk: int) -> None:
    """Answer workload requests (one JSON line each) with (CPU seconds, a check of the result)."""
    sys.path.insert(0, str(Path(repo).resolve()))
    import modeling_anira  # noqa: F401  (this checkout's or the base's)

    sys.path.pop(0)
    import torch

    import bench_depth_batching as fixed
    import bench_eval as evaluation
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    models = {}
    for name in MODELS:
        model = fixed.load(name)
        tokens = torch.randint(3, model.config.vocab_size, (8, 32 + 32 + 1), generator=torch.Generator().manual_seed(8))
        tokenizer = AutoTokenizer.from_pretrained(fixed.HUB / name)
        models[name] = (model, tokens[:, :32], tokens[:, 32:], tokenizer, evaluation.test_prompts(fixed.HUB / name, per_size))
    print(json.dumps({"ready": sys.modules["modeling_anira"].__file__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        model, prompts, continuations, tokenizer, rows = models[request["model"]]
        if request["kind"] == "fixed":
            forced = continuations if request["continuation"] == "forced" else None
            if request["method"] == "lockstep":
                seconds, tokens, depths, _ = fixed.lockstep(model, prompts, 32, 8, forced)
            else:
                k = int(request["method"].split("=")[1])
                seconds, tokens, depths, _ = fixed.depth_batched(model, prompts, 32, 8, forced, k)
            check = [tokens.tolist(), depths.tolist()]
        else:
            part = rows[request["chunk"] * chunk : (request["chunk"] + 1) * chunk]
            seconds, correct = evaluation.timed(model, part, tokenizer, 64, request["method"] == "depth")
            check = sum(correct)
        print(json.dumps([seconds, check]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the other checkout (its modeling_anira is timed as 'base')")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per_size", type=int, default=500, help="evaluation prompts per size (4 sizes)")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--output", default=str(HERE / "compare_depth_batching.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.per_size, args.chunk)
    if not args.base:
        parser.error("--base is required")
    checkouts = {"base": args.base, "new": str(HERE.parents[1])}
    commits = {arm: subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip() for arm, path in checkouts.items()}
    workers = {arm: subprocess.Popen([sys.executable, __file__, "--worker", path, "--per_size", str(args.per_size),
                                      "--chunk", str(args.chunk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for arm, path in checkouts.items()}
    for process in workers.values():
        json.loads(process.stdout.readline())

    def call(arm: str, request: dict):
        workers[arm].stdin.write(json.dumps(request) + "\n")
        workers[arm].stdin.flush()
        return json.loads(workers[arm].stdout.readline())

    tasks = [dict(kind="fixed", model=name, method=method, continuation=continuation)
             for name in MODELS for method, continuation in FIXED]
    tasks += [dict(kind="eval", model=name, method=method, chunk=chunk)
              for name in MODELS for chunk in range(4 * args.per_size // args.chunk) for method in ("generate", "depth")]
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    seconds, checks = {}, {}
    calls = 0
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for task in tasks:
            arms = ["base", "new"] if calls % 2 == 0 else ["new", "base"]
            calls += 1
            for arm in arms:
                spent, check = call(arm, task)
                # fixed: one result per continuation whatever the method; eval: one count per chunk
                key = (task["model"], task["kind"], task.get("continuation", task.get("chunk")))
                if checks.setdefault(key, check) != check:
                    raise AssertionError(f"{arm} {task}: a different result than the other calls of this workload")
                if round_:
                    workload = (task["model"], task["kind"], task.get("continuation", "eval"), task["method"])
                    total = seconds.setdefault(workload, {}).setdefault(arm, [0.0] * args.rounds)
                    total[round_ - 1] += spent  # eval: summed over the chunks of a round
    for process in workers.values():
        process.stdin.close()
    rows = []
    for (model, kind, continuation, method), arms in seconds.items():
        median = {arm: statistics.median(values) for arm, values in arms.items()}
        rows.append(dict(model=model, workload=kind, continuation=continuation, method=method,
                         base_median_s=round(median["base"], 4), new_median_s=round(median["new"], 4),
                         new_over_base=round(median["new"] / median["base"], 3),
                         base_s=[round(x, 4) for x in arms["base"]], new_s=[round(x, 4) for x in arms["new"]]))
    reference = {(r["model"], r["workload"], r["continuation"]): r for r in rows if r["method"] in ("lockstep", "generate")}
    for r in rows:
        plain = reference[(r["model"], r["workload"], r["continuation"])]
        for arm in ("base", "new"):
            r[f"{arm}_over_plain"] = round(r[f"{arm}_median_s"] / plain[f"{arm}_median_s"], 3)
        print(f"{r['model']:<14} {r['workload']:<5} {r['continuation']:<7} {r['method']:<10} base {r['base_median_s']:.3f} s "
              f"new {r['new_median_s']:.3f} s new/base {r['new_over_base']:.2f} | over lockstep/generate: base "
              f"{r['base_over_plain']:.2f} new {r['new_over_plain']:.2f}", flush=True)
    record = {"started": started, "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "commits": commits,
              "setup": {k: v for k, v in vars(args).items() if k not in ("base", "output", "worker")},
              "timer": "time.process_time (CPU time of each worker)", "same_results": True, "rows": rows}
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
