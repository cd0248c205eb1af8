"""Does thinking longer at inference close the gap to 0.9? The BREVO models halted later, or run at full depth.

    python experiments/brevo_accuracy/test_time_depth.py hub_configs/anira-o-brevo hub_configs/anira-fixed-brevo
    python experiments/brevo_accuracy/test_time_depth.py hub_configs/anira-e-brevo

Each ANIRA-O folder is evaluated as trained (halting threshold 0.5), with the halting threshold raised to 0.7 and
0.9 (a token halts only once its halting probability reaches it, so later), and with `min_depth` = `max_depth`
(every token runs every iteration); a fixed-depth folder as trained and with two iterations more than it was
trained with; an ANIRA-E folder as trained and loaded as a fixed-depth model (every token runs all `max_depth`
iterations: its router has no logit for a deeper budget, so that is the one longer setting it has). These are
`from_pretrained` config overrides: no weight changes. Greedy-answer accuracy and mean answer depth per graph
size, [Wilson 95 %], on the validation prompts (64 per size, what training probes) and on the test prompts (300
per size) of the shipped recipe's data (task seed 0). Nothing here is selected on either split: every setting is
printed.
"""

import sys

import torch
from transformers import AutoModelForCausalLM

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.evaluation import evaluation_report
from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer


def settings(config) -> list[dict]:
    if config.depth_mode == "online":
        return [{}, {"halting_threshold": 0.7}, {"halting_threshold": 0.9}, {"min_depth": config.max_depth}]
    if config.depth_mode == "fixed":
        return [{}, {"max_depth": config.max_depth + 2}]
    if config.depth_mode == "early":  # the router has no logit past max_depth: all it can be given is every iteration
        return [{}, {"depth_mode": "fixed"}]
    raise ValueError(f"unknown depth_mode {config.depth_mode!r}")


def main() -> None:
    torch.set_num_threads(1)
    tokenizer = load_tokenizer("brevo")
    spec = TaskSpec("brevo", train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8], num_train=1_000_000,
                    num_test_per_size=300, seed=0)
    data = build_dataset_dict(spec, tokenizer)
    data = {"validation": data["validation"], "test_seen": data["test_seen"]}
    for path in sys.argv[1:]:
        base = AutoModelForCausalLM.from_pretrained(path).config
        for override in settings(base):
            model = AutoModelForCausalLM.from_pretrained(path, **override).eval()
            report = evaluation_report(model, data, tokenizer, splits=tuple(data), generate=True)
            for split in data:
                cells = "  ".join(
                    f"n = {c}: {v['generated_accuracy']:.2f} [{v['intervals']['generated_accuracy'][0]:.2f}, "
                    f"{v['intervals']['generated_accuracy'][1]:.2f}] depth {v['mean_depth']:.2f} ({v['items']})"
                    for c, v in report[split]["per_complexity"].items())
                print(f"{path} {override or 'as trained'} {split}: {cells}", flush=True)


if __name__ == "__main__":
    main()
