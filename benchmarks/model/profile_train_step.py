"""Where a training step's time goes, full depth against a small mean depth (the width-64 case of
bench_adaptive_training.py): torch.profiler's self CPU time per operator, per step.

    python benchmarks/model/profile_train_step.py                 # width 64, d = 1.5
    python benchmarks/model/profile_train_step.py --width 512 --depth 2.5
"""

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_adaptive_training import bias_for_depth, build, set_bias  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=float, default=1.5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=0, help="also list the N operators taking most time at the small depth")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, ids = build(args.width, 256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    settings = {"full depth": -1e4, f"d={args.depth}": bias_for_depth(model, ids, args.depth)}
    model.model.recurrence = "fast"

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    per_op = {}
    for name, bias in settings.items():
        set_bias(model, bias)
        for _ in range(args.steps):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        per_op[name] = {e.key: (e.self_cpu_time_total / 1000 / args.steps, e.count // args.steps) for e in prof.key_averages()}
    full, small = per_op.values()
    print(f"width {args.width}, {ids.numel()} tokens; ms per step (calls per step) under the profiler")
    print(f"| operator | {' | '.join(per_op)} | ratio |")
    print("|---|---|---|---|")
    print(f"| all | {sum(v[0] for v in full.values()):.1f} | {sum(v[0] for v in small.values()):.1f} "
          f"| {sum(v[0] for v in small.values()) / sum(v[0] for v in full.values()):.2f} |")
    attention = [k for k in set(full) | set(small) if "scaled_dot_product" in k]
    for label, keys in [("matmul (aten::mm)", ["aten::mm"]), ("attention (SDPA kernels)", attention)]:
        a = sum(full.get(k, (0, 0))[0] for k in keys)
        b = sum(small.get(k, (0, 0))[0] for k in keys)
        calls = (sum(full.get(k, (0, 0))[1] for k in keys), sum(small.get(k, (0, 0))[1] for k in keys))
        print(f"| {label} | {a:.1f} ({calls[0]}) | {b:.1f} ({calls[1]}) | {b / a:.2f} |")
    for key in sorted(small, key=lambda k: -small[k][0])[: args.top]:
        a, b = full.get(key, (0.0, 0)), small[key]
        print(f"| {key} | {a[0]:.1f} ({a[1]}) | {b[0]:.1f} ({b[1]}) | {b[0] / a[0] if a[0] else float('inf'):.2f} |")


if __name__ == "__main__":
    main()
