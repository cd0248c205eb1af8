"""Does skipping halted tokens really save time? Decoding and prefill time against mean depth.

    python benchmarks/inference/bench_decode.py [--steps 32] [--prompt 32] [--repeats 5] [--threads 1] [--clock cpu]
    python benchmarks/inference/bench_decode.py --context 8192 --steps 16 --repeats 3   # long-context decoding
    python benchmarks/inference/bench_decode.py --replot [--context N] [--markdown]   # figure / tables from results.json

One online-mode model (width 512, 1 prelude, 2 core, 1 coda layer, max_depth 8, fp32, SDPA) with a
random halting head: sweeping its `halting_threshold` on the same weights gives several mean depths d,
and a threshold of ~1 forces every token to max_depth (the reference). For each threshold, batch size
(1 and 8) and recurrence (`fast`: fast_path.py; `dense`: the masked reference, which still stops when no
token of the batch is active), it times

- prefill: one forward over the prompt (batch x prompt tokens) with a fresh cache;
- decoding: `steps` steps of one token per sequence after that prefill;

and reports the measured time ratio t(d) / t(max_depth) next to the ideal ratio of layer applications
(prelude + coda + core x d) / (prelude + coda + core x max_depth), d measured on the tokens timed.

Long-context mode (`--context N`): decoding after an N-token context, where reading every sequence's cached
keys/values, work that grows with the number of active rows, outweighs reading the layer weights, work that
does not. Prefilling 8 x N tokens per setting would take most of an hour on a CPU, so for each threshold one
N-token context is prefilled once (batch size 1, fast path: that prefill is the batch-1 prefill row) and its
cache is copied into every row of the batch; the `steps` decoded tokens differ between rows, so their depths
do. Only decoding is timed per setting. Results go to `context_<N>/` next to this file.

Every run is repeated `repeats` times, interleaved over all settings so that other load on the machine
hits them alike; prefill time is the minimum over the repeats and decoding time the sum over steps of
each step's minimum (every step does the same work in every repeat). By default the times are this
process's CPU time with one torch thread: on a shared 2-core machine two OpenMP threads wait for each
other whenever another job holds a core (we measured a 512 x 2048 matmul of 8 rows at 16 ms instead of
0.43 ms), which swamps any effect of the depth; wall time is recorded too (`wall_ratio`). Writes
results.json and depth_vs_time.png next to this file; RESULTS.md discusses them.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import modeling_anira  # noqa: F401
from modeling_anira import AniraCache, AniraConfig, AniraForCausalLM

HERE = Path(__file__).resolve().parent
FULL_DEPTH = 1 - 1e-7  # a threshold no halting probability reaches in fp32: every token runs max_depth


def build_model(seed: int = 0, max_positions: int = 512) -> AniraForCausalLM:
    config = AniraConfig(vocab_size=256, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                         num_key_value_heads=8, num_prelude_layers=1, num_core_layers=2, num_coda_layers=1,
                         max_depth=8, depth_mode="online", depth_init_bias=0.0, max_position_embeddings=max_positions,
                         attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = AniraForCausalLM(config).eval()
    # A random halting head with lambda near 0.5: thresholds around 0.5 then give mean depths from 1 to max_depth.
    # (Untrained, a token's lambda hardly changes between iterations, so most tokens halt at 1 or run to 8.)
    torch.nn.init.normal_(model.model.depth_controller.halting_head.weight, std=0.5 / config.hidden_size**0.5)
    return model


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class Clock:
    """CPU time of this process (robust to other jobs on a shared machine) and wall time."""

    def __enter__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


@torch.no_grad()
def prefill_and_decode(model, prompt: torch.Tensor, continuation: torch.Tensor):
    """Prefill `prompt`, then decode one token per step; the fed tokens are `continuation` (fixed random
    tokens rather than the model's greedy choice, so that every setting sees the same, varied inputs; the
    logits and argmax are still computed every step). Returns (prefill Clock, one Clock per step, depths)."""
    cache = AniraCache(model.config)
    with Clock() as prefill:
        out = model(prompt, cache=cache, logits_to_keep=1)
        out.logits[:, -1].argmax(-1)
    return prefill, *decode(model, cache, continuation)


@torch.no_grad()
def decode(model, cache: AniraCache, continuation: torch.Tensor):
    """One token per step from `cache` on; returns (one Clock per step, depths of every cached position)."""
    steps = []
    for step in range(continuation.shape[1]):
        with Clock() as clock:
            out = model(continuation[:, step : step + 1], cache=cache, logits_to_keep=1)
            out.logits[:, -1].argmax(-1)
        steps.append(clock)
    return steps, cache.depths


class SharedContext:
    """A prefilled context's keys/values (batch size 1), copied into every row of a fresh cache on demand."""

    def __init__(self, model, context: torch.Tensor):
        cache = AniraCache(model.config)
        with torch.no_grad(), Clock() as self.prefill:
            model(context, cache=cache, logits_to_keep=1).logits[:, -1].argmax(-1)
        self.keys_values = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        self.depths = cache.depths.clone()

    def cache(self, config, batch: int) -> AniraCache:
        cache = AniraCache(config)
        for slot, (key, value) in enumerate(self.keys_values):
            cache.update(key.expand(batch, -1, -1, -1), value.expand(batch, -1, -1, -1), slot)
        cache.record_depths(self.depths.expand(batch, -1))
        return cache


def ideal_ratio(config, depth: float) -> float:
    return config.layer_applications(depth) / config.layer_applications(config.max_depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.4, 0.45, 0.5, 0.55])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--recurrences", nargs="+", default=["fast", "dense"])
    parser.add_argument("--context", type=int, default=0,
                        help="Long-context mode: decode after a prefilled context of this many tokens (see above).")
    parser.add_argument("--output", default=None, help="Default: next to this file (context_<N>/ with --context).")
    parser.add_argument("--replot", action="store_true", help="Only redraw the figure from results.json.")
    parser.add_argument("--markdown", action="store_true", help="With --replot: print RESULTS.md's tables.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.output = args.output or str(HERE / f"context_{args.context}" if args.context else HERE)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    if args.replot:
        rows = add_ratios(json.loads((Path(args.output) / "results.json").read_text())["rows"])
        print_markdown(rows) if args.markdown else print_table(rows)
        plot(rows, build_model().config, Path(args.output) / "depth_vs_time.png", plot_title(args))
        return

    model = build_model(max_positions=max(512, args.context + args.steps))
    controller = model.model.depth_controller
    thresholds = [FULL_DEPTH, *args.thresholds]
    length = (args.context or args.prompt) + args.steps
    tokens = {b: torch.randint(3, model.config.vocab_size, (b, length), generator=torch.Generator().manual_seed(b))
              for b in args.batch_sizes}
    contexts = {}
    if args.context:  # one prefill per threshold, shared by every setting (see the module docstring)
        model.model.recurrence = "fast"
        for threshold in thresholds:
            controller.threshold = threshold
            contexts[threshold] = SharedContext(model, tokens[1][:1, : args.context])
            print(f"context of {args.context} tokens prefilled at threshold {threshold:.3f} "
                  f"in {contexts[threshold].prefill.cpu:.1f} s", flush=True)
    settings = [(b, r, th) for b in args.batch_sizes for r in args.recurrences for th in thresholds]
    best: dict = {}
    for repeat in range(args.repeats + 1):  # the first round warms up and is discarded
        for batch, recurrence, threshold in settings:
            controller.threshold, model.model.recurrence = threshold, recurrence
            if args.context:
                start = args.context
                steps, depths = decode(model, contexts[threshold].cache(model.config, batch), tokens[batch][:, start:])
                prefill = contexts[threshold].prefill if batch == 1 and recurrence == "fast" else None
            else:
                start = args.prompt
                prefill, steps, depths = prefill_and_decode(model, tokens[batch][:, :start], tokens[batch][:, start:])
            prefill_depths, decode_depths = depths[:, :start], depths[:, start:]
            if repeat == 0:
                continue
            key = (batch, recurrence, threshold)
            entry = best.setdefault(key, {"prefill_cpu": float("inf"), "prefill_wall": float("inf"),
                                          "steps_cpu": [float("inf")] * args.steps,
                                          "steps_wall": [float("inf")] * args.steps})
            for kind in ("cpu", "wall"):
                if prefill is not None:
                    entry[f"prefill_{kind}"] = min(entry[f"prefill_{kind}"], getattr(prefill, kind))
                entry[f"steps_{kind}"] = [min(a, getattr(b, kind)) for a, b in zip(entry[f"steps_{kind}"], steps)]
                entry[f"decode_{kind}"] = sum(entry[f"steps_{kind}"])
            for phase in ("prefill", "decode"):
                entry[f"{phase}_s"] = entry[f"{phase}_{args.clock}"]
            entry["prefill_depth"] = prefill_depths.float().mean().item()
            entry["decode_depth"] = decode_depths.float().mean().item()
            # Decoding iterations actually run per step: the deepest token of the batch at that step.
            entry["decode_max_depth"] = decode_depths.max(0).values.float().mean().item()
        print(f"round {repeat} done", flush=True)

    rows = []
    for (batch, recurrence, threshold), entry in best.items():
        for phase in ("prefill", "decode"):
            if entry[f"{phase}_s"] == float("inf"):  # long-context mode times one prefill per threshold
                continue
            depth = entry[f"{phase}_depth"]
            rows.append(dict(batch=batch, recurrence=recurrence, threshold=threshold, phase=phase, depth=depth,
                             seconds=entry[f"{phase}_s"], wall_seconds=entry[f"{phase}_wall"],
                             ideal=ideal_ratio(model.config, depth),
                             batch_max_depth=entry.get("decode_max_depth") if phase == "decode" else None))
    rows = add_ratios(rows)
    machine = {"cpu": cpu_model(), "nproc": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
               "load_average_at_end": os.getloadavg()}
    setup = {k: v for k, v in vars(args).items() if k != "output"}
    output = Path(args.output)
    (output / "results.json").write_text(json.dumps({"machine": machine, "setup": setup, "rows": rows}, indent=1))
    print_table(rows)
    plot(rows, model.config, output / "depth_vs_time.png", plot_title(args))


def print_markdown(rows) -> None:
    """One table per (phase, batch size): both paths side by side at each threshold."""
    for phase in ("decode", "prefill"):
        for batch in sorted({r["batch"] for r in rows}):
            table = {(r["recurrence"], r["threshold"]): r for r in rows if r["phase"] == phase and r["batch"] == batch}
            if not table:
                continue
            paths = [p for p in ("fast", "dense") if any(k[0] == p for k in table)]
            print(f"\n### {phase}, batch size {batch}\n")
            header = ["threshold", "d"] + [f"{p} t(d)/t(8)" for p in paths] + ["ideal"] + [f"{p} / ideal" for p in paths]
            deepest = phase == "decode" and batch > 1
            if deepest:
                header.append("deepest token per step")
            print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
            for threshold in sorted({k[1] for k in table}, reverse=True):
                first = table[(paths[0], threshold)]
                cells = ["~1 (max_depth)" if threshold == FULL_DEPTH else f"{threshold:g}", f"{first['depth']:.2f}"]
                cells += [f"{table[(p, threshold)]['ratio']:.3f}" for p in paths] + [f"{first['ideal']:.3f}"]
                cells += [f"{table[(p, threshold)]['ratio_over_ideal']:.2f}" for p in paths]
                if deepest:
                    cells.append(f"{first['batch_max_depth']:.2f}")
                print("| " + " | ".join(cells) + " |")
            reference = min(r["seconds"] for r in table.values() if r["threshold"] == FULL_DEPTH)
            print(f"\nt(max_depth) = {1000 * reference:.0f} ms CPU time.")


def plot_title(args) -> str:
    return f"\nafter a {args.context}-token context (decoding; prefill: that context at batch size 1)" if args.context else ""


def add_ratios(rows: list[dict]) -> list[dict]:
    """t(d) / t(max_depth). At max_depth both paths run the same dense iterations (every token is active), so
    the reference of a (phase, batch) is the faster of their two measurements: one number for both paths,
    which also halves the chance that a disturbed reference run skews a whole curve."""
    reference = {}
    for r in rows:
        if r["threshold"] == FULL_DEPTH:
            key = (r["phase"], r["batch"])
            old = reference.get(key, (float("inf"), float("inf")))
            reference[key] = (min(old[0], r["seconds"]), min(old[1], r["wall_seconds"]))
    for r in rows:
        seconds, wall = reference[(r["phase"], r["batch"])]
        r["ratio"], r["wall_ratio"] = r["seconds"] / seconds, r["wall_seconds"] / wall
        r["ratio_over_ideal"] = r["ratio"] / r["ideal"]
    return rows


def print_table(rows) -> None:
    print(f"{'phase':<8}{'batch':>6} {'path':<6}{'thresh':>8}{'d':>7}{'t(d)/t(D)':>11}{'ideal':>8}{'ratio/ideal':>12}"
          f"{'ms':>9}{'wall ratio':>11}")
    for r in sorted(rows, key=lambda r: (r["phase"], r["batch"], r["recurrence"], -r["depth"])):
        print(f"{r['phase']:<8}{r['batch']:>6} {r['recurrence']:<6}{r['threshold']:>8.3f}{r['depth']:>7.2f}"
              f"{r['ratio']:>11.3f}{r['ideal']:>8.3f}{r['ratio_over_ideal']:>12.2f}{1000 * r['seconds']:>9.1f}"
              f"{r['wall_ratio']:>11.3f}")


def plot(rows, config, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(2, len(batches), figsize=(5 * len(batches), 8), squeeze=False)
    depths = torch.linspace(1, config.max_depth, 50).tolist()
    for i, phase in enumerate(("decode", "prefill")):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            if not any(r["phase"] == phase and r["batch"] == batch for r in rows):
                ax.set_visible(False)  # long-context mode times no 8-row prefill
                continue
            ax.plot(depths, [ideal_ratio(config, d) for d in depths], "k-", label="ideal (layer applications)")
            ax.plot(depths, [1.2 * ideal_ratio(config, d) for d in depths], "k:", label="1.2 x ideal")
            for recurrence, style in (("fast", "o-"), ("dense", "s--")):
                points = sorted((r["depth"], r["ratio"]) for r in rows
                                if r["phase"] == phase and r["batch"] == batch and r["recurrence"] == recurrence)
                if points:
                    ax.plot(*zip(*points), style, label=f"{recurrence} path (measured)")
            deepest = sorted((r["depth"], ideal_ratio(config, r["batch_max_depth"])) for r in rows
                             if r["phase"] == phase and r["batch"] == batch and r["recurrence"] == "fast"
                             and r.get("batch_max_depth") is not None)
            if phase == "decode" and batch > 1 and deepest:
                ax.plot(*zip(*deepest), "x", color="gray",
                        label="layer applications of each step's deepest token")
            ax.set_title(f"{phase}, batch size {batch}")
            ax.set_xlabel("mean depth d (iterations per token)")
            ax.set_ylabel("time ratio t(d) / t(max_depth)")
            ax.set_xlim(0.8, config.max_depth + 0.2)
            ax.set_ylim(0, 1.35)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"ANIRA inference time vs mean depth (same weights; width 512, 1+2x d+1 layers, max_depth 8){title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
