"""Where a study training step's time goes: its phases (batch assembly, forward, backward, clipping, AdamW) and the
operators of forward and backward, for a shipped recipe's model (trained weights) and batches, one torch thread.

    python benchmarks/model/step_phases.py --recipe anira-fixed-depo
    python benchmarks/model/step_phases.py --recipe anira-e-depo --eager --top 15
    python benchmarks/model/step_phases.py --recipe anira-fixed-depo --attention   # also: attention's formulations

The model runs as its recipe trains it (`--compile_model`, unless `--eager`); the learning rate is tiny, so the depths
stay those of the trained weights. Phases are the median CPU time of this process over `--steps` steps after
`--warmup`; the operator table is torch.profiler's self CPU time per step over the same steps (forward and backward
only). `--attention` also times one attention call (forward and backward) at the recipe's shape (batch rows, heads,
positions, head size; a causal mask) through SDPA's flash and math kernels and written out (eager and compiled).
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_recipe_throughput import recipe_setup  # noqa: E402

from anira_study import trainer  # noqa: E402
from anira_study.data import PackedAnswerCollator  # noqa: E402

PHASES = ("assemble", "forward", "backward", "clip", "optimizer", "zero_grad")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="anira-fixed-depo")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--top", type=int, default=10, help="operators listed")
    parser.add_argument("--eager", action="store_true", help="the eager forward, not the recipe's compiled one")
    parser.add_argument("--attention", action="store_true", help="also time attention's formulations at this shape")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer, train, training_args = recipe_setup(args.recipe, 4096, "trained")
    model = model if args.eager else trainer.compile_model(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-12, weight_decay=training_args.weight_decay)
    collator, size = PackedAnswerCollator(tokenizer.pad_token_id), training_args.per_device_train_batch_size
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    times = {phase: [] for phase in PHASES}
    profiles = []
    for step in range(args.warmup + 2 * args.steps):
        profiled = step >= args.warmup + args.steps  # the last `steps` steps under the profiler, forward and backward
        marks = [time.process_time()]
        batch = collator([train[i] for i in order[(step * size) % len(train):][:size]])
        marks.append(time.process_time())
        with profile(activities=[ProfilerActivity.CPU]) if profiled else contextlib.nullcontext() as prof:
            out = model(**batch)
            marks.append(time.process_time())
            out.loss.backward()
            marks.append(time.process_time())
        if profiled:
            profiles.append(prof.key_averages())
        torch.nn.utils.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
        marks.append(time.process_time())
        optimizer.step()
        marks.append(time.process_time())
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.process_time())
        if args.warmup <= step < args.warmup + args.steps:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                times[phase].append(1000 * (end - start))
    medians = {phase: statistics.median(values) for phase, values in times.items()}
    total = sum(medians.values())
    print(f"{args.recipe} ({'eager' if args.eager else 'compiled'}), batch {size}, {batch['input_ids'].shape[1]} "
          f"positions a row; median ms per step over {args.steps} steps")
    print("| phase | ms | share |\n|---|---|---|")
    for phase, ms in medians.items():
        print(f"| {phase} | {ms:.1f} | {ms / total:.0%} |")
    self_ms: dict[str, float] = {}
    for averages in profiles:
        for event in averages:  # the forward's and the backward's compiled graphs are one line
            key = "compiled graphs (inductor's fused kernels)" if event.key.startswith("## Call CompiledFxGraph") else event.key
            self_ms[key] = self_ms.get(key, 0.0) + event.self_cpu_time_total / 1000 / len(profiles)
    everything = sum(self_ms.values())
    print(f"\nforward and backward under the profiler: {everything:.1f} ms a step\n| operator | ms | share |\n|---|---|---|")
    for key in sorted(self_ms, key=lambda k: -self_ms[k])[: args.top]:
        print(f"| {key} | {self_ms[key]:.1f} | {self_ms[key] / everything:.0%} |")
    if args.attention:
        config = model.config
        attention_formulations(size, config.num_attention_heads, batch["input_ids"].shape[1], config.head_dim, args.steps)


def attention_formulations(rows: int, heads: int, positions: int, head_dim: int, steps: int) -> None:
    """Median CPU ms of one attention call, forward and backward, per formulation (causal boolean mask, as packed
    training passes one)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(rows, heads, positions, head_dim, requires_grad=True) for _ in range(3))
    mask = torch.ones(positions, positions, dtype=torch.bool).tril().expand(rows, 1, positions, positions).clone()
    grad = torch.randn(rows, heads, positions, head_dim)

    def written(q, k, v, mask):
        scores = (q @ k.transpose(-1, -2) * head_dim ** -0.5).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, -1) @ v

    def kernel(backend):
        def call():
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return call

    compiled = torch.compile(written)
    arms = {"SDPA, flash kernel": kernel(SDPBackend.FLASH_ATTENTION), "SDPA, math kernel": kernel(SDPBackend.MATH),
            "written out, eager": lambda: written(q, k, v, mask), "written out, compiled": lambda: compiled(q, k, v, mask)}
    times = {arm: [] for arm in arms}
    for step in range(5 + steps):
        for arm, call in (arms.items() if step % 2 == 0 else reversed(arms.items())):
            start = time.process_time()
            call().backward(grad)
            if step >= 5:
                times[arm].append(1000 * (time.process_time() - start))
    print(f"\none attention call, forward and backward, [{rows}, {heads}, {positions}, {head_dim}]\n| formulation | ms |\n|---|---|")
    for arm, values in times.items():
        print(f"| {arm} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
