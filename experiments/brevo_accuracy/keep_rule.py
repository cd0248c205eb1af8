"""Whether a continuation stage is kept, read off the validation split only (the test split decides nothing).

    python experiments/brevo_accuracy/keep_rule.py --data RUN_FOLDER BEFORE AFTER [MORE ...]

For each model folder, per graph size: teacher-forced token accuracy on the validation prompts (the number the
keep rule compares at the largest seen size; printed also as the training probe computes it, which must agree),
with a bootstrap interval over prompts, and greedy-answer accuracy on the same prompts with its Wilson interval,
and the number of prompts; then rho(depth, n) over the validation prompts with its bootstrap interval. `--data` is
a training folder of the recipe (its `anira_data.json` rebuilds the data; every stage of a recipe has the same task
seed, so the same validation prompts).

The rule, for each AFTER against BEFORE (the first folder), printed as the last line of each AFTER:

1. a stage is kept when its probe accuracy at the largest seen size is above BEFORE's;
2. when the two are equal (the same count of answer tokens right, on the same prompts), it is kept when its
   validation rho(depth, n) is above BEFORE's. A fixed-depth model has no rho, so a tie is not kept.

Accuracy comes first because it is the target farther from being met. Part 2 was added on 2026-11-30, before the
stages it was then applied to were trained, but after the test split of one stage it would have kept (ANIRA-E on
BREVO at penalty 0.01, `experiments/penalty_runs/`) had been read; every decision taken under part 1
alone is the same under both parts (the one tie, the fixed model's fourth stage, has no rho).

3. with `--min_rho R`, an adaptive model's stage whose validation rho(depth, n) is below R is not kept, whatever
   its accuracy. Added on 2026-12-01 at 01:23 UTC, before the run it decides (ANIRA-E's stage at a lower peak
   learning rate) had started: ANIRA-E's seventh stage had shown that training on can raise accuracy while its
   depth stops following n, so for ANIRA-E, which is short of both targets at once, a stage now has to keep
   rho >= 0.6 (the target) to be kept. ANIRA-O and the fixed baseline are decided as before.

`--num_validation N` reads N validation prompts per size instead of the recipe's 64: the split is rebuilt from the
same validation bucket of the prompt space (a hash of the prompt; no training row of any stage is ever drawn from
it), so it is as unseen as the 64 and only larger. From 2026-12-01 06:31 UTC on, before the two stages it first
decided had been trained, decisions read 512 per size: on the 64 the fixed baseline's n = 6 was at 0.98 token
accuracy (four wrong answer tokens) while its test accuracy was 0.85, and its three fourth stages had tied or fallen
by one token: the 64 prompts could no longer tell stages apart. The parts of the rule are unchanged.
"""

import argparse
import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.callbacks import DepthProbeCallback
from anira_study.data import probe_rows
from anira_study.evaluation import evaluation_report, load_eval_data
from anira_study.reproduce import keep_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="BEFORE, then the stages to decide on")
    parser.add_argument("--data", required=True, help="a training folder of the recipe (holds anira_data.json)")
    parser.add_argument("--per_size", type=int, default=None,
                        help="validation prompts per size read (default: all of the split, 64 in the recipes)")
    parser.add_argument("--num_validation", type=int, default=None,
                        help="rebuild the validation split with this many prompts per size (same validation bucket)")
    parser.add_argument("--min_rho", type=float, default=None,
                        help="part 3: a stage whose validation rho(depth, n) is below this is not kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, sizes = load_eval_data(args.data, num_validation=args.num_validation)
    rows = probe_rows(data, args.per_size or len(data["validation"]))
    data["validation"] = data["validation"].select([i for i, row in enumerate(data["validation"]) if row in rows])
    tokenizer = AutoTokenizer.from_pretrained(args.data)
    print(f"validation split of {args.data}: {len(rows)} prompts, sizes {sizes}")
    largest, first = max(sizes), None
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
        rho, (low, high) = report["spearman"], report["spearman_interval"]
        print(f"  rho(depth, n) " + ("undefined (constant depth)" if math.isnan(rho) else
                                     f"{rho:.3f} [{low:.3f}, {high:.3f}]") + f" over {report['items']} prompts")
        this = (probe[f"probe/accuracy@{largest}"], rho)
        if first is None:
            first = this
        else:
            keep, why = keep_stage(first, this, args.min_rho)
            print(f"  keep rule against {args.models[0]}: {'KEPT' if keep else 'not kept'}: {why}")


if __name__ == "__main__":
    main()
