"""Whether a continuation stage is kept, read off the validation split only (the test split decides nothing).

    python benchmarks/experiment/brevo_accuracy/keep_rule.py --data RUN_FOLDER BEFORE AFTER [MORE ...]

For each model folder: the validation probe that training logs (teacher-forced token accuracy per graph size, the
number the keep rule compares at the largest seen size) and the greedy-answer accuracy on the same validation
prompts, with Wilson 95 % intervals and counts. `--data` is a training folder of the recipe (its `anira_data.json`
rebuilds the data; every stage of a recipe has the same task seed, so the same validation prompts). A stage is kept
when its model's probe accuracy at the largest seen size is above the previous stage's.
"""

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.callbacks import DepthProbeCallback
from anira_study.data import probe_rows
from anira_study.evaluation import evaluation_report, load_eval_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", required=True, help="a training folder of the recipe (holds anira_data.json)")
    parser.add_argument("--per_size", type=int, default=64, help="validation prompts per size (the recipes probe 64)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, sizes = load_eval_data(args.data)
    rows = probe_rows(data, args.per_size)
    data["validation"] = data["validation"].select([i for i, row in enumerate(data["validation"]) if row in rows])
    tokenizer = AutoTokenizer.from_pretrained(args.data)
    print(f"validation split of {args.data}: {len(rows)} prompts, sizes {sizes}")
    for path in args.models:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        probe = DepthProbeCallback(rows, tokenizer).probe(model)
        report = evaluation_report(model, data, tokenizer, splits=("validation",), generate=True)["validation"]
        print(f"\n{path}")
        for c, values in report["per_complexity"].items():
            n, accuracy = values["items"], values["generated_accuracy"]
            low, high = values["intervals"]["generated_accuracy"]
            print(f"  n = {c}: probe token accuracy {probe[f'probe/accuracy@{c}']:.4f}, depth {probe[f'probe/depth@{c}']:.2f}; "
                  f"greedy answers {accuracy:.3f} [{low:.3f}, {high:.3f}] of {n}")


if __name__ == "__main__":
    main()
