"""What does one layer application cost as a function of the rows it computes? The regime behind RESULTS.md.

    python benchmarks/inference/row_cost.py [--threads 1] [--repeats 20] [--contexts 32 8192]

Skipping halted tokens saves time in proportion to layer applications only where a layer's cost grows in
proportion to its rows (tokens). For the benchmark model (width 512, MLP 2048, 8 heads of 64) this times, for
1 to 8 rows:

- `weights`: the seven projections of one decoder layer (q, k, v, o, gate, up, down) in fp32, cycling through
  the weights of four distinct layers (67 MB, more than the 32 MB L3) as the model does;
- `attention(L)`: one query per row attending to its own sequence's L cached keys/values (SDPA, one call),

and prints each as a fraction of its 8-row cost. One torch thread; CPU time; min over the repeats.
"""

import argparse
import time

import torch
import torch.nn.functional as F


def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--contexts", type=int, nargs="+", default=[32, 8192])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, mlp, heads, head_dim, batch = 512, 2048, 8, 64, 8
    generator = torch.Generator().manual_seed(0)
    layers = [[torch.randn(width, width, generator=generator) for _ in range(4)]
              + [torch.randn(mlp, width, generator=generator) for _ in range(2)]
              + [torch.randn(width, mlp, generator=generator)] for _ in range(4)]

    def weights(rows: int):
        x = torch.randn(rows, width)

        def run():
            for q, k, v, o, gate, up, down in layers:
                for w in (q, k, v, o):
                    F.linear(x, w)
                F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)

        return lambda: run()

    def attention(rows: int, context: int):
        keys = torch.randn(batch, heads, context, head_dim)
        values = torch.randn(batch, heads, context, head_dim)
        query = torch.randn(rows, heads, 1, head_dim)
        return lambda: F.scaled_dot_product_attention(query, keys[:rows], values[:rows])

    row_counts = [1, 2, 4, 6, 8]
    table = {"weights (one layer)": [best_time(weights(r), args.repeats) / len(layers) for r in row_counts]}
    for context in args.contexts:
        table[f"attention, L = {context}"] = [best_time(attention(r, context), args.repeats) for r in row_counts]
    print(f"{'rows':<24}" + "".join(f"{r:>10}" for r in row_counts) + "   ms at 8 rows")
    for name, times in table.items():
        print(f"{name:<24}" + "".join(f"{t / times[-1]:>10.2f}" for t in times) + f"{1000 * times[-1]:>14.2f}")


if __name__ == "__main__":
    main()
