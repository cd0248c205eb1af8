"""Depth-wise batched decoding against today's lockstep generate(): time against the ideal ratio of layer applications.

    python benchmarks/inference/bench_depth_batching.py [--batch_sizes 8 32] [--prompt 32] [--steps 32] [--repeats 3]
    python benchmarks/inference/bench_depth_batching.py --models anira-o-brevo --batch_sizes 8 --steps 8 --repeats 1  # smoke

Models: the shipped width-64 models `hub_configs/anira-o-brevo` and `anira-e-brevo` (trained), and width-512 random
models (1 prelude, 2 core, 1 coda layer, max_depth 8, fp32, SDPA) in online mode (`random-o-512`: the halting head of
bench_decode.py, threshold 0.5) and early mode (`random-e-512`: a random router). Each batch of `batch` random
32-token prompts (no padding) is prefilled, then `steps` tokens per sequence are processed: by default fixed random
continuation tokens, as in bench_decode.py (`--continuation forced`: each token's depth then varies from step to
step; DepthBatcher is fed them through a logits processor), or the greedy choices (`--continuation greedy`):

- `lockstep`: today's generate() loop (one forward of one token per sequence per step, the fast path: a step runs
  until the batch's deepest token halts);
- `depth`: `DepthBatcher` (modeling_anira/depth_batching.py; its prefill, one prompt at a time, is not timed).

Each method is also timed with the depth controller replaced by fixed depth `max_depth` on the same weights (its
reference t(D)), in the same run, interleaved over the repeats (min over repeats; CPU time of this process, one torch
thread by default). Reported per (model, batch, method): the mean depth d of the processed tokens, the measured
ratio t(d) / t(D), the ideal ratio (P + K + C d) / (P + K + C D), their quotient (goal: 1.2 at batch 8, 1.15 at
batch 32), t(d) against the lockstep's own t(D) (absolute cost), and whether both methods chose the same tokens.
Two machine-independent numbers come with them: `passes/ideal`, the layer passes run (one layer's weights over any
number of rows) against the reference's, over the ideal (the time ratio where a pass costs the same for 1 row as
for 8, as after a short prompt: row_cost.py); and `longest row/ideal`, the same for the longest chain of layer
applications of one row, a bound no schedule of a fixed batch beats (with one prompt per row).
Results go to depth_batching.json next to this file (or --output).
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

import modeling_anira  # noqa: F401
from modeling_anira import AniraCache, AniraConfig, AniraForCausalLM, FixedDepth
from modeling_anira import DepthBatcher

HERE = Path(__file__).resolve().parent
HUB = HERE.parents[1] / "hub_configs"


def random_model(mode: str, seed: int = 0) -> AniraForCausalLM:
    config = AniraConfig(vocab_size=256, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                         num_key_value_heads=8, num_prelude_layers=1, num_core_layers=2, num_coda_layers=1,
                         max_depth=8, depth_mode=mode, depth_init_bias=0.0, max_position_embeddings=512,
                         attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = AniraForCausalLM(config).eval()
    controller = model.model.depth_controller
    if mode == "online":  # as bench_decode.py: lambda near 0.5, so threshold 0.5 gives depths from 1 to max_depth
        torch.nn.init.normal_(controller.halting_head.weight, std=0.5 / config.hidden_size**0.5)
    else:  # a random router: depths spread over 1..max_depth
        torch.nn.init.normal_(controller.router.weight, std=4.0 / config.hidden_size**0.5)
    return model


def load(name: str) -> AniraForCausalLM:
    if name == "random-o-512":
        return random_model("online")
    if name == "random-e-512":
        return random_model("early")
    return AniraForCausalLM.from_pretrained(HUB / name, attn_implementation="sdpa").eval()


class fixed_depth:
    """The same weights with every token at max_depth: the reference t(D)."""

    def __init__(self, model, on: bool):
        self.model, self.on = model, on

    def __enter__(self):
        self.saved = self.model.model.depth_controller
        if self.on:
            self.model.model.depth_controller = FixedDepth(self.model.config)

    def __exit__(self, *exc):
        self.model.model.depth_controller = self.saved


class Forced(LogitsProcessor):
    """Teacher forcing through the logits processors: the next token of each sequence is its given continuation's."""

    def __init__(self, prompts: torch.Tensor, continuations: torch.Tensor):
        self.next = {tuple(p.tolist()): c for p, c in zip(prompts, continuations)}
        self.prompt = prompts.shape[1]

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt
        tokens = torch.stack([self.next[tuple(prompt)][step] for prompt in input_ids[:, : self.prompt].tolist()])
        return torch.full_like(scores, -float("inf")).scatter_(1, tokens[:, None], 0.0)


@torch.no_grad()
def lockstep(model, prompts: torch.Tensor, steps: int, batch: int, continuations: torch.Tensor | None = None):
    """generate()'s greedy loop over the prompts in chunks of `batch` (fed `continuations` instead of the argmax when
    given): returns (CPU seconds of the decoding steps, tokens [N, steps], depths [N, steps], layer passes)."""
    seconds, all_tokens, all_depths, passes = 0.0, [], [], 0
    for index, chunk in enumerate(prompts.split(batch)):
        forced = None if continuations is None else continuations[index * batch : index * batch + len(chunk)]
        cache = AniraCache(model.config)
        token = model(chunk, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float().argmax(-1)
        token = token if forced is None else forced[:, 0]
        tokens, start = [token], time.process_time()
        for step in range(steps):
            token = model(token[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float().argmax(-1)
            token = token if forced is None else forced[:, step + 1]
            tokens.append(token)
        seconds += time.process_time() - start
        depths = cache.depths[:, chunk.shape[1]:]
        all_tokens.append(torch.stack(tokens[:-1], 1))
        all_depths.append(depths)
        config = model.config  # each step: prelude, the core until the deepest token halts, coda
        passes += sum(config.layer_applications(int(d)) for d in depths.max(0).values)
    return seconds, torch.cat(all_tokens), torch.cat(all_depths), passes


@torch.no_grad()
def depth_batched(model, prompts: torch.Tensor, steps: int, batch: int, continuations: torch.Tensor | None = None,
                  min_coda_rows: int = 1):
    """DepthBatcher with `batch` rows over all the prompts; the prefills (one prompt at a time, when a row frees) are
    not timed."""
    forced = None if continuations is None else LogitsProcessorList([Forced(prompts, continuations)])
    batcher = DepthBatcher(model, max_batch_size=batch, max_new_tokens=steps + 1, eos_token_id=None, pad_token_id=0,
                           do_sample=False, min_coda_rows=min_coda_rows, logits_processor=forced)
    for prompt in prompts:
        batcher.add(prompt)
    admit, prefill = batcher._admit, [0.0]

    def timed_admit():
        start = time.process_time()
        try:
            return admit()
        finally:
            prefill[0] += time.process_time() - start

    batcher._admit = timed_admit
    finished, start = [], time.process_time()
    while batcher.busy:
        finished += batcher.step()
    seconds = time.process_time() - start - prefill[0]
    finished.sort(key=lambda r: r.request_id)
    tokens = torch.stack([r.generated[:steps] for r in finished])
    depths = torch.stack([r.depths[prompts.shape[1]:prompts.shape[1] + steps] for r in finished])
    config = model.config
    passes = (config.num_core_layers * batcher.ticks + config.num_prelude_layers * batcher.prelude_passes
              + config.num_coda_layers * batcher.coda_passes)
    return seconds, tokens, depths, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["anira-o-brevo", "anira-e-brevo", "random-o-512", "random-e-512"])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--continuation", choices=["forced", "greedy"], default="forced",
                        help="forced: every sequence is fed fixed random tokens (as bench_decode.py; the logits and "
                             "argmax are still computed); greedy: the model's own argmax (random prompts then loop, "
                             "each sequence at about one depth).")
    parser.add_argument("--prompts_per_row", type=int, default=1,
                        help="Prompts per batch row: more than 1 decodes a stream of batch x this many prompts (lockstep: "
                             "in chunks of `batch`; depth: continuous batching, a row taken as soon as one frees).")
    parser.add_argument("--coda_fractions", type=float, nargs="+", default=[0.0, 0.5],
                        help="DepthBatcher runs for min_coda_rows = max(1, fraction x batch) each.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "depth_batching.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        model = load(name)
        config = model.config
        for batch in args.batch_sizes:
            tokens = torch.randint(3, config.vocab_size, (batch * args.prompts_per_row, args.prompt + args.steps + 1),
                                   generator=torch.Generator().manual_seed(batch))
            prompts, continuations = tokens[:, : args.prompt], tokens[:, args.prompt :]
            continuations = continuations if args.continuation == "forced" else None
            methods = {"lockstep": lambda m, p, s, b: lockstep(m, p, s, b, continuations)}
            for fraction in args.coda_fractions:
                k = max(1, int(fraction * batch))
                methods[f"depth/k={k}"] = lambda m, p, s, b, k=k: depth_batched(m, p, s, b, continuations, k)
            best, seen = {}, {}
            for repeat in range(args.repeats + 1):  # round 0 warms up
                for method, run in methods.items():
                    for reference in (False, True):
                        with fixed_depth(model, reference):
                            seconds, tokens, depths, passes = run(model, prompts, args.steps, batch)
                        if repeat:
                            key = (method, reference)
                            best[key] = min(best.get(key, float("inf")), seconds)
                            seen[key] = (tokens, depths, passes)
            reference_lockstep = best[("lockstep", True)]
            for method in methods:
                tokens, depths, passes = seen[(method, False)]
                d = depths.float().mean().item()
                ideal = config.layer_applications(d) / config.layer_applications(config.max_depth)
                ratio = best[(method, False)] / best[(method, True)]
                # Layer passes (one layer's weights over any number of rows) against the reference's: the time ratio
                # where a pass costs the same for any number of rows (short contexts, few rows: row_cost.py).
                pass_ratio = passes / seen[(method, True)][2]
                # No schedule of `batch` rows needs fewer passes than its longest chain of layer applications: with one
                # prompt per row, the row whose tokens ran deepest (the others wait for it at the end).
                chains = (config.num_prelude_layers + config.num_coda_layers + config.num_core_layers * depths).sum(-1)
                bound = chains.max().item() / seen[(method, True)][2] if args.prompts_per_row == 1 else None
                rows.append(dict(model=name, batch=batch, prompts=len(prompts), method=method, depth=d,
                                 seconds=best[(method, False)], pass_ratio=pass_ratio,
                                 pass_ratio_over_ideal=pass_ratio / ideal,
                                 longest_row_over_ideal=None if bound is None else bound / ideal,
                                 reference_seconds=best[(method, True)], ratio=ratio, ideal=ideal,
                                 ratio_over_ideal=ratio / ideal,
                                 over_lockstep_reference=best[(method, False)] / reference_lockstep / ideal,
                                 passes=passes,
                                 same_tokens_as_lockstep=bool(torch.equal(tokens, seen[("lockstep", False)][0]))))
                print_row(rows[-1])
    machine = {"nproc": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
               "load_average_at_end": os.getloadavg()}
    setup = {k: v for k, v in vars(args).items() if k != "output"}  # no machine's folder in a committed record
    Path(args.output).write_text(json.dumps({"machine": machine, "setup": setup, "rows": rows}, indent=1))


def print_row(r: dict) -> None:
    print(f"{r['model']:<13}{r['batch']:>3} x{r['prompts'] // r['batch']} {r['method']:<10} d={r['depth']:.2f} "
          f"ideal={r['ideal']:.3f} t/ideal={r['ratio_over_ideal']:.2f} passes/ideal={r['pass_ratio_over_ideal']:.2f} "
          f"longest row/ideal={r['longest_row_over_ideal'] or float('nan'):.2f} "
          f"t vs lockstep t(D)/ideal={r['over_lockstep_reference']:.2f} ms={1000 * r['seconds']:.0f} "
          f"ref ms={1000 * r['reference_seconds']:.0f} same tokens={r['same_tokens_as_lockstep']}", flush=True)


if __name__ == "__main__":
    main()
