"""Greedy answer validity on training prompts against test prompts, for BREVO models of the shipped data recipe
(graph sizes 3-6, 200,000 training rows, seed 0): is a model short of fitting its training set, or fitting it and
failing to generalise?

    python experiments/brevo_accuracy/train_vs_test.py hub_configs/anira-fixed-brevo [MORE MODEL DIRS]

Scores the first 150 rows of size 5 and of size 6 of the training and of the test split (Wilson 95 % intervals).
"""

import sys

import torch
from transformers import AutoModelForCausalLM

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.evaluation import generated_correct
from anira_study.statistics import wilson_interval
from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer

ROWS_PER_SIZE = 150


def main() -> None:
    torch.set_num_threads(1)
    tokenizer = load_tokenizer("brevo")
    spec = TaskSpec("brevo", train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8], num_train=200_000,
                    num_test_per_size=300, seed=0)
    splits = build_dataset_dict(spec, tokenizer)
    for path in sys.argv[1:]:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        for split in ("train", "test_seen"):
            for size in (5, 6):
                rows = splits[split].filter(lambda c: c == size, input_columns="complexity").select(range(ROWS_PER_SIZE))
                valid = sum(generated_correct(model, list(rows), tokenizer))
                low, high = wilson_interval(valid, len(rows))
                print(f"{path}  {split:9s}  n = {size}: {valid / len(rows):.2f} [{low:.2f}, {high:.2f}] of {len(rows)}",
                      flush=True)


if __name__ == "__main__":
    main()
