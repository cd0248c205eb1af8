"""Operator calls per training step of the shipped recipes: a count that does not depend on the machine or its load,
unlike a step's time.

    python benchmarks/model/count_step_ops.py                                 # anira-o-brevo and anira-e-depo
    python benchmarks/model/count_step_ops.py --repo ../other-checkout        # another checkout's code

The step and its batches are bench_recipe_throughput.py's packed arm (the recipe's batches through
PackedAnswerCollator, learning rate 0, so every step sees the same weights). Reported per step, averaged over
`--steps` batches after one warm-up step: torch.profiler's events (every operator call, nested ones included) and
the top-level aten calls (those no other aten call made) of the forward, the backward and the optimizer step
(clipping and AdamW).
"""

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).parent))
from bench_recipe_throughput import PackedAnswerCollator, recipe_setup  # noqa: E402  (reads --repo)

PHASES = ("forward", "backward", "optimizer")


def count(name: str, weights: str, steps: int, num_train: int, seed: int) -> dict:
    if PackedAnswerCollator is None:
        raise ValueError("the checkout measured has no PackedAnswerCollator (before padding-free training)")
    torch.manual_seed(seed)
    model, tokenizer, train, training_args = recipe_setup(name, num_train, weights)
    model.train()
    batch_size = training_args.per_device_train_batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=training_args.weight_decay)
    collator = PackedAnswerCollator(tokenizer.pad_token_id)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    batches = [collator([train[i] for i in order[step * batch_size:(step + 1) * batch_size]]) for step in range(steps + 1)]

    def step(batch):
        with record_function("forward"):
            out = model(**batch)
        with record_function("backward"):
            out.loss.backward()
        with record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[1:]:
            step(batch)
    events, top = 0, collections.Counter()
    for event in prof.events():
        if event.name in PHASES:
            continue
        events += 1
        parent = event.cpu_parent
        if not event.name.startswith("aten::") or (parent is not None and parent.name.startswith("aten::")):
            continue
        while parent is not None and parent.name not in PHASES:
            parent = parent.cpu_parent
        top[parent.name if parent is not None else "other"] += 1
    result = {"recipe": name, "weights": weights, "steps": steps, "events": events / steps}
    result |= {phase: top[phase] / steps for phase in PHASES}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["anira-o-brevo", "anira-e-depo"])
    parser.add_argument("--weights", nargs="+", default=["init", "trained"], choices=["init", "trained"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--num_train", type=int, default=4096, help="training rows built to draw the batches from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repo", help="the checkout whose code is counted (default: this one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, per step, mean over {args.steps} packed batches")
    print("| recipe | weights | profiler events | top-level aten calls: forward | backward | optimizer | total |")
    print("|---|---|---|---|---|---|---|")
    for name in args.recipes:
        for weights in args.weights:
            r = count(name, weights, args.steps, args.num_train, args.seed)
            total = sum(r[phase] for phase in PHASES)
            print(f"| {name} | {weights} | {r['events']:.0f} | {r['forward']:.0f} | {r['backward']:.0f} | "
                  f"{r['optimizer']:.0f} | {total:.0f} |")


if __name__ == "__main__":
    main()
