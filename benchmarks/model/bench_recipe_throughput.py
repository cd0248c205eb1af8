"""Training throughput of the shipped recipes: samples and answer tokens per core-second, one torch thread.

    python benchmarks/model/bench_recipe_throughput.py                          # anira-o-brevo, anira-e-depo
    python benchmarks/model/bench_recipe_throughput.py --recipes anira-fixed-brevo --steps 40

A step is what the Trainer runs for each batch of the recipe: forward with the recipe's losses (iteration
loss and compute penalty included), backward, gradient clipping at the recipe's norm, AdamW. The batches are
the recipe's own (`per_device_train_batch_size` rows of its training split, drawn with a fixed seed), and each
arm computes the same batches: `padded` (right-padded rows, the collator before padding-free training) and
`packed` (anira_study.data.PackedAnswerCollator, the default now). Arms alternate step by step, so a change of
machine load hits both alike; the learning rate is 0, so the weights, and with them every token's depth, stay
the same for every arm throughout. `--compile` adds a third arm, the packed batches through
`torch.compile(model, dynamic=True)` (its first step, which compiles, is reported apart); `--compile_layers` another, the
packed batches through a copy of the model with `--compile_layers` (anira_study.trainer.compile_layers); `--compile_model`
another, through a copy with `--compile_model` (anira_study.trainer.compile_model: the whole training forward as one
graph). `--bf16` adds the packed batches under bfloat16 autocast (what `--bf16 true` gives the Trainer's forward;
weights, gradients and AdamW stay float32), and with `--compile_model` the compiled copy under it too. A compiled or
bfloat16 arm's losses and depths are checked against the packed arm's (the same batches and weights) and the largest
relative loss difference reported. `--weights trained` starts from the folder's trained weights (the depths of
late training), `init` from a fresh initialisation (controllers at max_depth: early training), and a folder path from
that model (a study run's `checkpoint-N`: its depths at that point of training).

Reported per arm: the median CPU time of a step (this process's, one thread), samples per core-second, answer
tokens (supervised labels) per core-second, and the share of the computed positions that are padding.
"""

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

REPO = Path(__file__).resolve().parents[2]
if "--repo" in sys.argv:  # measure another checkout's code (e.g. the commit before a change) with this script
    REPO = Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()
sys.path.insert(0, str(REPO))

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from anira_study.arguments import DataArguments, ModelArguments, OutputArguments, ScheduleArguments  # noqa: E402
from anira_study.data import AnswerCollator, load_data  # noqa: E402

try:  # absent before padding-free training: `--repo` may point at a checkout of an older commit
    from anira_study.data import PackedAnswerCollator
except ImportError:
    PackedAnswerCollator = None
from anira_study.trainer import load_model_and_tokenizer  # noqa: E402


def recipe_setup(name: str, num_train: int, weights: str):
    """The recipe's model (fresh or trained weights), its training rows and its step settings."""
    recipe = json.loads((REPO / "hub_configs" / name / "recipe.json").read_text())
    argv = list(recipe["train_args"])
    argv[argv.index("--num_train") + 1] = str(num_train)
    argv += ["--output_dir", "unused"]
    parser = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments, OutputArguments))
    model_args, data_args, schedule_args, training_args, _ = parser.parse_args_into_dataclasses(args=argv)
    model_args.model_name_or_path = str(REPO / "hub_configs" / name) if weights in ("init", "trained") else weights
    model_args.from_scratch = weights == "init"
    # the arms decide what is compiled: a recipe's own --compile_model / --compile_layers would compile every arm
    model_args.compile_model = model_args.compile_layers = False
    model, tokenizer = load_model_and_tokenizer(model_args, data_args.task)
    if schedule_args.compute_penalty is not None:
        model.config.compute_penalty = schedule_args.compute_penalty
    data, _ = load_data(data_args)
    return model, tokenizer, data["train"], training_args


CHECKED_ARMS = ("compiled", "layers", "whole", "packed_bf16", "whole_bf16")  # checked against the packed arm


def run(name: str, steps: int, warmup: int, num_train: int, weights: str, seed: int, compile_arm: bool = False,
        layers_arm: bool = False, model_arm: bool = False, bf16_arm: bool = False) -> dict:
    torch.manual_seed(seed)
    model, tokenizer, train, training_args = recipe_setup(name, num_train, weights)
    model.train()
    batch_size = training_args.per_device_train_batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=training_args.weight_decay)
    collators = {"padded": AnswerCollator(tokenizer.pad_token_id)}
    if PackedAnswerCollator is not None:
        collators["packed"] = PackedAnswerCollator(tokenizer.pad_token_id)
    models = dict.fromkeys(collators, model)
    if compile_arm and PackedAnswerCollator is not None:  # the packed batches through torch.compile(model)
        collators["compiled"] = collators["packed"]
        models["compiled"] = torch.compile(model, dynamic=True)
    optimizers = dict.fromkeys(collators, optimizer)
    # the packed batches through a copy whose layers (--compile_layers) or whole training forward (--compile_model)
    # are compiled; learning rate 0 keeps each copy equal to the model
    for arm, wanted, compiler in (("layers", layers_arm, "compile_layers"), ("whole", model_arm, "compile_model")):
        if wanted:
            from anira_study import trainer

            collators[arm] = collators["packed"]
            models[arm] = getattr(trainer, compiler)(copy.deepcopy(model))
            optimizers[arm] = torch.optim.AdamW(models[arm].parameters(), lr=0.0, weight_decay=training_args.weight_decay)
    if bf16_arm:  # the same models and optimizers under bfloat16 autocast (arms ending in "_bf16")
        for arm in [arm for arm in ("packed", "whole") if arm in collators]:
            collators[f"{arm}_bf16"], models[f"{arm}_bf16"], optimizers[f"{arm}_bf16"] = (
                collators[arm], models[arm], optimizers[arm])
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator).tolist()
    rows = [train[i] for i in order[: (steps + warmup) * batch_size]]
    times = {arm: [] for arm in collators}
    first_step = {}
    outputs = {arm: [] for arm in collators}  # (loss, depths) per step: the compiled arms checked against packed
    stats = {arm: {"positions": 0, "padding": 0, "answer_tokens": 0, "samples": 0} for arm in collators}
    for step in range(warmup + steps):
        chunk = rows[step * batch_size:(step + 1) * batch_size]
        arms = list(collators) if step % 2 == 0 else list(reversed(collators))
        for arm in arms:
            batch = collators[arm](chunk)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=arm.endswith("_bf16"))
            start = time.process_time()
            with autocast:
                out = models[arm](**batch)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(models[arm].parameters(), training_args.max_grad_norm)
            optimizers[arm].step()
            optimizers[arm].zero_grad(set_to_none=True)
            elapsed = time.process_time() - start
            first_step.setdefault(arm, elapsed)  # the compiled arm's first step holds the compilation
            outputs[arm].append((out.loss.item(), None if out.depths is None else out.depths.detach()))
            if step >= warmup:
                times[arm].append(elapsed)
                s = stats[arm]
                s["positions"] += batch["input_ids"].numel()
                s["padding"] += int((batch["attention_mask"] == 0).sum())
                s["answer_tokens"] += int((batch["labels"] != -100).sum())
                s["samples"] += len(chunk)
    result = {"recipe": name, "weights": weights, "batch": batch_size, "steps": steps}
    for arm, values in times.items():
        s, median = stats[arm], statistics.median(values)
        per_step_answers = s["answer_tokens"] / steps
        result[arm] = {"step_ms": 1000 * median, "samples_per_s": batch_size / median,
                       "answer_tokens_per_s": per_step_answers / median, "padding_share": s["padding"] / s["positions"],
                       "positions_per_step": s["positions"] / steps}
    if "packed" in result:
        result["speedup"] = result["padded"]["step_ms"] / result["packed"]["step_ms"]
    for arm in CHECKED_ARMS:  # the first step of a compiled arm holds its compilation
        if arm in result:
            result[arm]["first_step_s"] = first_step[arm]
            # the same batches and weights as the packed arm: its losses within rounding, its depths the same
            pairs = list(zip(outputs[arm], outputs.get("packed", [])))
            result[arm]["max_loss_rel_diff"] = max((abs(a - b) / abs(b) for (a, _), (b, _) in pairs), default=None)
            result[arm]["depths_equal"] = all(d is None or torch.equal(d, e) for (_, d), (_, e) in pairs)
            result[f"{arm}_speedup"] = result["padded"]["step_ms"] / result[arm]["step_ms"]
    return result


LABELS = {"padded": "padded", "packed": "packed", "compiled": "packed + compile", "layers": "packed + compiled layers",
          "whole": "packed + compiled model", "packed_bf16": "packed, bf16 autocast",
          "whole_bf16": "packed + compiled model, bf16 autocast"}  # each arm as the table names it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["anira-o-brevo", "anira-e-depo"])
    parser.add_argument("--weights", nargs="+", default=["init", "trained"],
                        help="init (fresh), trained (the folder's weights), or a checkpoint folder of the recipe's model "
                             "(e.g. a study run's checkpoint-N: the depths at that point of its training)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num_train", type=int, default=4096, help="training rows built to draw the batches from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--compile", action="store_true", help="also time the packed batches through torch.compile(model, dynamic=True)")
    parser.add_argument("--compile_layers", action="store_true",
                        help="also time the packed batches through a model with --compile_layers (its first step compiles)")
    parser.add_argument("--compile_model", action="store_true",
                        help="also time the packed batches through a model with --compile_model (its first step compiles)")
    parser.add_argument("--bf16", action="store_true",
                        help="also time the packed batches (and with --compile_model the compiled copy) under bfloat16 autocast")
    parser.add_argument("--repo", help="the checkout whose code is measured (default: this one); its hub_configs are used")
    args = parser.parse_args()
    for weights in args.weights:
        if weights not in ("init", "trained") and not (Path(weights) / "config.json").exists():
            parser.error(f"--weights takes init, trained or a model folder (with config.json), not {weights!r}")
    torch.set_num_threads(1)
    results = [run(name, args.steps, args.warmup, args.num_train, weights, args.seed, args.compile, args.compile_layers,
                   args.compile_model, args.bf16)
               for name in args.recipes for weights in args.weights]
    print(f"torch {torch.__version__}, 1 thread, median CPU time per step over {args.steps} steps per arm (alternating)")
    print("| recipe | weights | arm | step (ms) | samples / core-s | answer tokens / core-s | padding share | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for arm, label in [(arm, label) for arm, label in LABELS.items() if arm in r]:
            a = r[arm]
            speedup = r.get("speedup" if arm == "packed" else f"{arm}_speedup", 1.0)  # over padded
            if "first_step_s" in a:  # a compiled arm
                label += f" (first step {a['first_step_s']:.0f} s)"
            print(f"| {r['recipe']} | {r['weights']} | {label} | {a['step_ms']:.1f} | {a['samples_per_s']:.0f} | "
                  f"{a['answer_tokens_per_s']:.0f} | {a['padding_share']:.2f} | {speedup:.2f} |")
    for r in results:
        for arm in [arm for arm in CHECKED_ARMS if r.get(arm, {}).get("max_loss_rel_diff") is not None]:
            print(f"{r['recipe']} {r['weights']} {arm}: losses within {r[arm]['max_loss_rel_diff']:.1e} (relative) of the "
                  f"packed arm's, depths {'equal' if r[arm]['depths_equal'] else 'NOT equal'} on every step")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
