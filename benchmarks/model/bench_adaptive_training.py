"""Training-step time of an online (ANIRA-O) model against its mean depth: does training cost follow the
iterations tokens actually run?

For each width, one online model; its halting head's bias is set so that the tokens of the benchmark batch
halt at a chosen mean depth d (random head weights, so depths vary from token to token as in a trained
model). The same weights with the bias at -10^4 never halt: every token runs max_depth D, the reference step.
A training step is forward, backward and an AdamW step (learning rate 0, so the weights and hence the depths
stay the same over the repeats). Ideal = layer applications per token, (P + K + C (d + 1)) / (P + K + C D):
the straight-through gradient of a halting decision needs one iteration past the token's depth. The fast path
computes exactly min(d_i + 1, D) iterations per token (tests/test_fast_training.py); `computed` below is
that mean.

Time is the CPU time of the measuring process with one torch thread (robust to other jobs on a shared machine),
the minimum over repeats that are interleaved over all settings. At width 64 that minimum still differs from one
process to the next by up to about 15 % (the same code, minutes apart: each process places its small tensors
anew), so `--processes N` measures each width in N fresh processes and reports, per cell, the median ratio with
its range over the processes.

    python benchmarks/model/bench_adaptive_training.py --processes 5 64 --processes 1 512   # the table in RESULTS.md
    python benchmarks/model/bench_adaptive_training.py --widths 64 --repeats 3
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from modeling_anira import AniraConfig, AniraForCausalLM

SHAPES = {  # width -> the model and batch timed (batch x seq = 2048 tokens in both)
    64: dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_prelude_layers=1, num_core_layers=1,
             num_coda_layers=1, max_depth=6, batch=64, seq=32),  # the shipped DEPO/BREVO models
    512: dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_prelude_layers=1, num_core_layers=2,
              num_coda_layers=1, max_depth=8, batch=16, seq=128),
}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(width: int, vocab: int) -> tuple[AniraForCausalLM, torch.Tensor]:
    shape = dict(SHAPES[width])
    batch, seq = shape.pop("batch"), shape.pop("seq")
    torch.manual_seed(0)
    config = AniraConfig(vocab_size=vocab, max_position_embeddings=seq, depth_mode="online", compute_penalty=0.01, **shape)
    config._attn_implementation = "sdpa"
    model = AniraForCausalLM(config).train()
    # Halting logits ~ N(bias, 4) over tokens and iterations, whatever the width.
    torch.nn.init.normal_(model.model.depth_controller.halting_head.weight, std=2.0 / shape["hidden_size"] ** 0.5)
    ids = torch.randint(3, vocab, (batch, seq))
    return model, ids


def set_bias(model, value: float) -> None:
    with torch.no_grad():
        model.model.depth_controller.halting_head.bias.fill_(value)


@torch.no_grad()
def mean_depth(model, ids) -> float:
    model.model.recurrence = "dense"
    return model(ids).depths.float().mean().item()


def bias_for_depth(model, ids, target: float) -> float:
    """Bisection on the halting bias (mean depth falls as the bias rises)."""
    low, high = -12.0, 12.0
    for _ in range(14):  # 24 / 2**14: the bias to 0.0015
        middle = (low + high) / 2
        set_bias(model, middle)
        if mean_depth(model, ids) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def step_time(model, optimizer, ids, recurrence: str) -> float:
    model.model.recurrence = recurrence
    start = time.process_time()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.process_time() - start


def measure(width: int, depths: list[float], vocab: int, repeats: int) -> list[dict]:
    """One row per setting (full depth, then each d) of one width, measured in this process."""
    model, ids = build(width, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    config = model.config
    settings = [("full depth", -1e4)] + [(f"d={d}", bias_for_depth(model, ids, d)) for d in depths]
    measured = {}
    for name, bias in settings:
        set_bias(model, bias)
        depth = model(ids).depths.float()
        measured[name] = dict(depth=depth.mean().item(), computed=depth.add(1).clamp(max=config.max_depth).mean().item(),
                              fast=[], dense=[])
    for _ in range(repeats + 1):  # the first round warms up
        for name, bias in settings:
            set_bias(model, bias)
            for recurrence in ("fast", "dense"):
                measured[name][recurrence].append(step_time(model, optimizer, ids, recurrence))
    P, C, K, D = config.num_prelude_layers, config.num_core_layers, config.num_coda_layers, config.max_depth
    reference = min(min(measured["full depth"]["fast"][1:]), min(measured["full depth"]["dense"][1:]))
    rows = []
    for name, m in measured.items():
        fast, dense = min(m["fast"][1:]), min(m["dense"][1:])
        d = m["depth"]
        ideal = (P + K + C * min(d + 1, D)) / (P + K + C * D)
        rows.append(dict(width=width, setting=name, tokens=ids.numel(), mean_depth=round(d, 3),
                         computed_iterations=round(m["computed"], 3), fast_s=fast, dense_s=dense,
                         fast_ratio=fast / reference, dense_ratio=dense / reference, ideal=ideal,
                         fast_over_ideal=fast / reference / ideal))
    return rows


def in_processes(width: int, processes: int, args) -> list[dict]:
    """`measure` in `processes` fresh processes; per setting the medians, with fast_over_ideal's range."""
    runs = []
    for _ in range(processes):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            subprocess.run([sys.executable, __file__, "--widths", str(width), "--depths", *map(str, args.depths),
                            "--vocab", str(args.vocab), "--repeats", str(args.repeats), "--output", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
            runs.append(json.loads(out.read_text())["rows"])
    rows = []
    for cells in zip(*runs):
        row = dict(cells[0])
        for key in ("fast_s", "dense_s", "fast_ratio", "dense_ratio", "fast_over_ideal"):
            row[key] = statistics.median(c[key] for c in cells)
        row["fast_over_ideal_runs"] = [round(c["fast_over_ideal"], 3) for c in cells]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 512], choices=sorted(SHAPES))
    parser.add_argument("--depths", type=float, nargs="+", default=[1.5, 2.5, 4.0])
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", nargs=2, action="append", metavar=("N", "WIDTH"), default=[],
                        help="measure WIDTH in N fresh processes and report medians (repeatable); default 1 each")
    parser.add_argument("--output", default="benchmarks/model/adaptive_training.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    processes = {int(width): int(n) for n, width in args.processes}
    for width, n in processes.items():
        if width not in SHAPES or n < 1:
            raise SystemExit(f"--processes N WIDTH: WIDTH must be one of {sorted(SHAPES)} and N >= 1, got {n} {width}")
    widths = list(dict.fromkeys([*args.widths, *processes])) if args.processes else args.widths

    rows = []
    for width in widths:
        n = processes.get(width, 1)
        rows += measure(width, args.depths, args.vocab, args.repeats) if n == 1 else in_processes(width, n, args)

    header = (f"machine: {cpu_name()}, {os.cpu_count()} cores, 1 torch thread, torch {torch.__version__}, "
              f"fp32, SDPA, min CPU time over {args.repeats} interleaved repeats; processes per width: "
              + ", ".join(f"{w}: {processes.get(w, 1)}" for w in widths) + " (several: medians, and the range)")
    print(header)
    print("| width | tokens | setting | mean depth d | computed iterations | fast step (s) | dense step (s) "
          "| fast / full | ideal | fast / full / ideal | dense / full |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        spread = r.get("fast_over_ideal_runs")
        over = f"{r['fast_over_ideal']:.2f}" + (f" ({min(spread):.2f}-{max(spread):.2f})" if spread else "")
        print(f"| {r['width']} | {r['tokens']} | {r['setting']} | {r['mean_depth']:.2f} | {r['computed_iterations']:.2f} "
              f"| {r['fast_s']:.3f} | {r['dense_s']:.3f} | {r['fast_ratio']:.3f} | {r['ideal']:.3f} "
              f"| {over} | {r['dense_ratio']:.3f} |")
    Path(args.output).write_text(json.dumps(dict(machine=header, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
