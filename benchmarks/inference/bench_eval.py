"""Evaluating the shipped BREVO models: today's generate() against depth-wise batched decoding, on N test prompts per size.

    python benchmarks/inference/bench_eval.py                                  # 2,000 prompts per size (8,000 per model)
    python benchmarks/inference/bench_eval.py --per_size 200 --output benchmarks/inference/eval_depth_batching_smoke.json

What is timed is `anira_study.evaluation.generated_correct`, the generated-answer scoring of
examples/evaluate_models.py: greedy answers in batches of `--batch_size` prompts of one length (no padding), either
through `generate()` (the default) or through `DepthBatcher` (`depth_batching=True`: every prompt queued, rows
refilled as sequences end, `max_batch_size` = the batch size). The prompts are the models' test bucket, drawn as
experiments/brevo_accuracy/precision_check.py draws its 2,000 per seen size: each folder's recipe (task seed, seen
sizes) with `--per_size` test prompts per size.

The prompts, in the order generated_correct runs them (by prompt length), are cut into chunks of `--chunk`; each
chunk is scored by both methods back to back, the first method alternating from chunk to chunk, so that a change
in the machine's load hits both alike. CPU time of this process (`time.process_time`), one torch thread. A chunk
boundary splits a batch of one prompt length in two for generate() and drains the depth batcher's rows, so the
totals are those of a run in chunks, not of one call over all prompts (a few extra partial batches per chunk).
The run stops with an error unless both methods mark exactly the same rows correct. Writes a JSON with per model the
two totals, their ratio, the per-chunk times, the accuracy per size, and the load average around the run.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.evaluation import generated_correct
from anira_tasks import TaskSpec, build_dataset_dict

HERE = Path(__file__).resolve().parent
HUB = HERE.parents[1] / "hub_configs"
MODELS = ["anira-o-brevo", "anira-e-brevo", "anira-fixed-brevo"]


def test_prompts(model_dir: Path, per_size: int) -> list[dict]:
    """`per_size` test prompts per seen size of the folder's recipe (precision_check.py's draw), in generated_correct's
    order: by prompt length, then as drawn."""
    sizes = [int(s) for s in json.loads((model_dir / "report.json").read_text())["train_sizes"]]
    train_args = json.loads((model_dir / "recipe.json").read_text())["train_args"]
    seed = int(train_args[train_args.index("--seed") + 1])
    spec = TaskSpec(task="brevo", train_sizes=sizes, extrapolation_sizes=[], num_train=2000, num_validation=64,
                    num_test_per_size=per_size, seed=seed)
    rows = build_dataset_dict(spec)["test_seen"].to_list()
    return sorted(rows, key=lambda row: row["answer_start"])


def timed(model, rows, tokenizer, batch_size: int, depth_batching: bool) -> tuple[float, list[bool]]:
    start = time.process_time()
    correct = generated_correct(model, rows, tokenizer, batch_size, depth_batching=depth_batching)
    return time.process_time() - start, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--per_size", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1024, help="prompts scored by both methods in turn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "eval_depth_batching.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    results = {}
    for name in args.models:
        model_dir = HUB / name
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        rows = test_prompts(model_dir, args.per_size)
        for depth_batching in (False, True):  # warm-up: first calls pay one-off costs
            timed(model, rows[: args.batch_size], tokenizer, args.batch_size, depth_batching)
        seconds = {"generate": [], "depth_batching": []}
        correct = {"generate": [], "depth_batching": []}
        for index, start in enumerate(range(0, len(rows), args.chunk)):
            chunk = rows[start : start + args.chunk]
            order = ("generate", "depth_batching") if index % 2 == 0 else ("depth_batching", "generate")
            for method in order:
                spent, marks = timed(model, chunk, tokenizer, args.batch_size, method == "depth_batching")
                seconds[method].append(round(spent, 3))
                correct[method] += marks
        if correct["generate"] != correct["depth_batching"]:
            differ = [i for i, (a, b) in enumerate(zip(correct["generate"], correct["depth_batching"])) if a != b]
            raise AssertionError(f"{name}: the two methods score {len(differ)} rows differently (first: {differ[:5]})")
        totals = {method: round(sum(times), 3) for method, times in seconds.items()}
        sizes = sorted({row["complexity"] for row in rows})
        accuracy = {size: round(sum(c for c, row in zip(correct["generate"], rows) if row["complexity"] == size)
                                / sum(row["complexity"] == size for row in rows), 4) for size in sizes}
        results[name] = {
            "prompts": len(rows), "per_size": args.per_size, "chunks": len(seconds["generate"]),
            "generate_s": totals["generate"], "depth_batching_s": totals["depth_batching"],
            "depth_batching_over_generate": round(totals["depth_batching"] / totals["generate"], 3),
            "same_rows_correct": True, "generated_accuracy": accuracy, "chunk_seconds": seconds,
        }
        print(f"{name}: {len(rows)} prompts, generate {totals['generate']:.2f} s, depth batching "
              f"{totals['depth_batching']:.2f} s ({results[name]['depth_batching_over_generate']:.2f} x), "
              f"the same {sum(correct['generate'])} rows correct")
    record = {
        "started": started, "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpu": platform.processor() or platform.machine(),
        "threads": args.threads, "torch": torch.__version__, "batch_size": args.batch_size, "chunk": args.chunk,
        "timer": "time.process_time (CPU time of this process)", "models": results,
    }
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
