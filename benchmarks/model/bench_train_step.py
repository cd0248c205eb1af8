"""Training-step throughput of AniraForCausalLM (fixed mode) against LlamaForCausalLM.

Both models have the same width and the same number of layer applications per token
(Llama layers = prelude + core x max_depth + coda), the same batch, SDPA attention, AdamW. The
recurrence and the depth bookkeeping should cost almost nothing when every token runs to max_depth:
the target is an ANIRA/Llama throughput ratio of at least 0.9. The concat injection adds one
2H -> H matmul per iteration and is reported on its own line.

Steps of the models are interleaved (A, B, C, A, B, C, ...) so that load changes on a shared machine
hit all of them alike; the median step time of each is reported.

    python benchmarks/model/bench_train_step.py            # defaults below
    python benchmarks/model/bench_train_step.py --hidden_size 512 --steps 30
"""

import argparse
import os
import platform
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from modeling_anira import AniraConfig, AniraForCausalLM


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--prelude", type=int, default=1)
    parser.add_argument("--core", type=int, default=2)
    parser.add_argument("--coda", type=int, default=1)
    parser.add_argument("--max_depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    sizes = dict(vocab_size=args.vocab, hidden_size=args.hidden_size, intermediate_size=4 * args.hidden_size,
                 num_attention_heads=args.heads, max_position_embeddings=args.seq)
    applications = args.prelude + args.core * args.max_depth + args.coda
    recurrent = dict(num_prelude_layers=args.prelude, num_core_layers=args.core, num_coda_layers=args.coda,
                     max_depth=args.max_depth, depth_mode="fixed")
    models = {
        "llama": LlamaForCausalLM(LlamaConfig(**sizes, num_hidden_layers=applications, tie_word_embeddings=True)),
        "anira (add)": AniraForCausalLM(AniraConfig(**sizes, **recurrent, injection="add")),
        "anira (concat)": AniraForCausalLM(AniraConfig(**sizes, **recurrent, injection="concat")),
    }
    optimizers = {}
    for name, model in models.items():
        model.config._attn_implementation = "sdpa"
        model.to(args.device).train()
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)

    ids = torch.randint(3, args.vocab, (args.batch, args.seq), device=args.device)

    def step(name: str) -> float:
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        loss = models[name](input_ids=ids, labels=ids).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    times = {name: [] for name in models}
    for index in range(args.warmup + args.steps):
        for name in models:
            elapsed = step(name)
            if index >= args.warmup:
                times[name].append(elapsed)

    tokens = args.batch * args.seq
    llama = statistics.median(times["llama"])
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}, device {args.device}, "
          f"torch {torch.__version__}")
    print(f"width {args.hidden_size}, {applications} layer applications (prelude {args.prelude} + core {args.core} "
          f"x max_depth {args.max_depth} + coda {args.coda}), batch {args.batch} x {args.seq} tokens, "
          f"{args.steps} steps after {args.warmup} warm-up, median step time")
    print("| model | step time (ms) | tokens/s | throughput vs Llama |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.1f} | {tokens / median:,.0f} | {llama / median:.3f} |")


if __name__ == "__main__":
    main()
