"""Whether a continuation stage is kept, read off the validation split only (the test split decides nothing).

    python benchmarks/experiment/brevo_accuracy/keep_rule.py --data RUN_FOLDER BEFORE AFTER [MORE ...]

For each model folder, per graph size: teacher-forced token accuracy on the validation prompts (the number the
keep rule compares at the largest seen size; printed also as the training probe computes it, which must agree),
with a bootstrap interval over prompts, and greedy-answer accuracy on the same prompts with its Wilson interval,
and the number of prompts. `--data` is a training folder of the recipe (its `anira_data.json`
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
            intervals = values["intervals"]
            print(f"  n = {c}: token accuracy {values['token_accuracy']:.4f} [{intervals['token_accuracy'][0]:.4f}, "
                  f"{intervals['token_accuracy'][1]:.4f}] (the training probe's: {probe[f'probe/accuracy@{c}']:.4f}), "
                  f"depth {values['mean_depth']:.2f}; greedy answers {values['generated_accuracy']:.3f} "
                  f"[{intervals['generated_accuracy'][0]:.3f}, {intervals['generated_accuracy'][1]:.3f}]; {values['items']} prompts")


if __name__ == "__main__":
    main()
