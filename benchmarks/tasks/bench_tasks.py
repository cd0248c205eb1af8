"""Generator throughput and the time to build a 100,000-sample BREVO training split.

    python benchmarks/tasks/bench_tasks.py [--num_train 100000] [--num_proc N]

Prints samples per CPU second of `generate_sample` (one core) for every task at a small and a
large size, then the wall and CPU time of `build_dataset_dict` for BREVO with n drawn from
docs/tasks.md's training distribution on 3..30 (tokenization and Arrow conversion included; the
evaluation splits are kept tiny so that the number is the training split's).
"""

import argparse
import os
import platform
import resource
import time

from anira_tasks import TASKS, TaskSpec, build_dataset_dict, generate_sample, load_tokenizer

SIZES = {"mano": (2, 16), "brevo": (8, 30), "depo": (2, 8)}  # CLRS tasks: (5, 16)
SECONDS_PER_MEASUREMENT = 1.0


def samples_per_second(task: str, complexity: int) -> float:
    """Samples per CPU second of this process (CPU time, so other jobs on the machine do not count)."""
    count, seed, start = 0, 0, time.process_time()
    while time.process_time() - start < SECONDS_PER_MEASUREMENT:
        for _ in range(50):
            generate_sample(task, complexity, seed)
            seed += 1
        count += 50
    return count / (time.process_time() - start)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished workers: the load-independent cost."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_train", type=int, default=100_000)
    parser.add_argument("--num_proc", type=int, default=None)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    print("\n| task | complexity | samples/s | complexity | samples/s |\n|---|---|---|---|---|")
    for task in TASKS:
        small, large = SIZES.get(task, (5, 16))
        print(f"| {task} | {small} | {samples_per_second(task, small):,.0f} | {large} | {samples_per_second(task, large):,.0f} |", flush=True)

    tokenizer = load_tokenizer("brevo")
    spec = TaskSpec("brevo", train_sizes=range(3, 31), num_train=args.num_train, num_validation=100, num_test_per_size=1)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    dataset_dict = build_dataset_dict(spec, tokenizer, num_proc=args.num_proc)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    train = dataset_dict["train"]
    tokens = sum(len(ids) for ids in train["input_ids"])
    print(f"\nBREVO train split: {len(train):,} samples (n ~ 1/(n + sqrt 30) on 3..30), {tokens:,} tokens, "
          f"built and tokenized in {seconds:.1f} s wall, {cpu:.1f} s CPU over all processes "
          f"(num_proc={args.num_proc or os.cpu_count()}, load average now {os.getloadavg()[0]:.2f}; target < 60 s wall)")


if __name__ == "__main__":
    main()
