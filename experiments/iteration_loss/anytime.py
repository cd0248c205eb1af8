"""How much of the answer each iteration already holds: teacher-forced accuracy of the answer tokens when every
token runs exactly t iterations (t = 1..max_depth), next to the model's own depths. Reads the validation split
(never a test split) of the task the model was trained on.

    python experiments/iteration_loss/anytime.py MODEL_DIR [MODEL_DIR ...] [--per_size 200]

MODEL_DIR is a `hub_configs/` folder (its `recipe.json` names the task) or a folder `examples/train.py` saved
(its `anira_data.json`). Accuracy is the task's teacher-forced token accuracy (for BREVO any currently valid
next node counts), so it needs no generation and is comparable across t.

A model trained with the plain objective can need all its iterations even for the easiest items (then no
depth below the maximum is enough and the compute penalty has nothing to take); a model trained with the
iteration loss should answer easy items after few iterations.

For an early-mode model (ANIRA-E) it also prints the router's mean probability of each depth at the positions
that predict answer tokens. A depth the router gives probability ~0 gets almost no gradient through the
straight-through softmax, so neither the LM loss nor the compute penalty can move the model there, however
well that depth would answer.
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.data import AnswerCollator
from anira_study.evaluation import answer_records
from anira_tasks import TaskSpec, build_dataset_dict
from modeling_anira.depth_control import FixedPlan


def task_spec(model_dir: str, per_size: int) -> TaskSpec:
    """The model's task, training sizes and task parameters, with `per_size` validation prompts per size (the
    validation stream is the training run's: its first prompts are the ones its probe read)."""
    folder = Path(model_dir)
    if (folder / "anira_data.json").exists():
        spec = json.loads((folder / "anira_data.json").read_text())
        task, sizes, params = spec["task"], spec["train_sizes"], spec.get("task_params", {})
    elif (folder / "recipe.json").exists():
        argv = json.loads((folder / "recipe.json").read_text())["train_args"]
        task, params = argv[argv.index("--task") + 1], {}
        if "--task_params" in argv:
            params = json.loads(argv[argv.index("--task_params") + 1])
        first = argv.index("--train_sizes") + 1
        stop = next((i for i in range(first, len(argv)) if argv[i].startswith("--")), len(argv))
        sizes = [int(a) for a in argv[first:stop]]
    else:
        raise ValueError(f"{model_dir} has neither anira_data.json nor recipe.json: its task is unknown")
    return TaskSpec(task=task, train_sizes=sizes, num_train=len(sizes), num_validation=per_size, num_test_per_size=1,
                    task_params=params)


def accuracy_by_size(records: list[dict]) -> dict:
    sizes = sorted({r["complexity"] for r in records})
    out = {}
    for size in sizes:
        tokens = [c for r in records if r["complexity"] == size for c in r["token_correct"]]
        depths = [d for r in records if r["complexity"] == size for d in r["depths"]]
        out[size] = (sum(tokens) / len(tokens), sum(depths) / len(depths))
    return out


def profile(model, rows: list[dict], tokenizer) -> tuple[dict, dict]:
    """({size: (accuracy, own depth)}, {t: {size: accuracy}}) with every token forced to t iterations."""
    natural = accuracy_by_size(answer_records(model, rows, tokenizer))
    controller = model.model.depth_controller
    plan = controller.plan
    forced = {}
    try:
        for t in range(1, model.config.max_depth + 1):
            controller.plan = lambda prelude, token_mask, max_depth, t=t: FixedPlan(token_mask, t)
            forced[t] = {size: acc for size, (acc, _) in accuracy_by_size(answer_records(model, rows, tokenizer)).items()}
    finally:
        controller.plan = plan
    return natural, forced


@torch.no_grad()
def router_probabilities(model, rows: list[dict], tokenizer, batch_size: int = 64) -> dict:
    """{size: mean depth probabilities (depths 1..max_depth)} over the positions predicting answer tokens."""
    collator = AnswerCollator(tokenizer.pad_token_id)
    sums, counts = {}, {}
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start:start + batch_size]
        probs = model(**collator(batch_rows), use_cache=False).depth_probs
        for i, row in enumerate(batch_rows):
            first = row["answer_start"] - 1
            answer = probs[i, first:first + row["answer_length"]]
            size = row["complexity"]
            sums[size] = sums.get(size, 0) + answer.sum(0)
            counts[size] = counts.get(size, 0) + len(answer)
    return {size: (sums[size] / counts[size]).tolist() for size in sorted(sums)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--per_size", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model_dir in args.models:
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        spec = task_spec(model_dir, args.per_size)
        rows = list(build_dataset_dict(spec, tokenizer, num_proc=1)["validation"])
        natural, forced = profile(model, rows, tokenizer)
        print(f"\n{model_dir} ({model.config.depth_mode}, iteration_loss_weight {model.config.iteration_loss_weight}); "
              f"{spec.task}, {args.per_size} validation prompts per size, answer tokens teacher forced")
        print(f"  size  own depth  accuracy  | accuracy when every token runs t iterations, t = 1..{model.config.max_depth}")
        for size, (accuracy, depth) in natural.items():
            row = "  ".join(f"{forced[t][size]:.2f}" for t in sorted(forced))
            print(f"  {size:4d}   {depth:5.2f}      {accuracy:.2f}      |  {row}")
        if model.config.depth_mode == "early":
            print(f"  size  router's mean probability of depth 1..{model.config.max_depth} at the answer positions")
            for size, probs in router_probabilities(model, rows, tokenizer).items():
                print(f"  {size:4d}   " + "  ".join(f"{p:.3f}" for p in probs))


if __name__ == "__main__":
    main()
