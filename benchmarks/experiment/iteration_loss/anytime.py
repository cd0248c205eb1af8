"""How much of the answer each iteration already holds: teacher-forced accuracy of the answer tokens when every
token runs exactly t iterations (t = 1..max_depth; the states after iteration t read out through the coda and
the head), next to the model's own depths. Reads the validation split (never a test split).

    python benchmarks/experiment/iteration_loss/anytime.py MODEL_DIR [MODEL_DIR ...]

A model trained with the plain objective can need all its iterations even for the easiest items (then no
depth below the maximum is enough and the compute penalty has nothing to take); a model trained with the
iteration loss should answer k-hop items from about iteration k on.
"""

import argparse
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.data import AnswerCollator
from anira_tasks import TaskSpec, build_dataset_dict
from modeling_anira.depth_control import FixedPlan


def validation_rows(model_dir: str, tokenizer, per_size: int) -> list[dict]:
    spec = TaskSpec(task="depo", train_sizes=[1, 2, 3], num_train=2000, num_validation=per_size,
                    task_params={"num_nodes": 8, "num_queries": 6, "supervise_all_queries": True, "edge_format": "token"})
    return list(build_dataset_dict(spec, tokenizer, num_proc=1)["validation"])


@torch.no_grad()
def profile(model, rows: list[dict], pad_token_id: int) -> dict:
    depth = model.config.max_depth
    batch = AnswerCollator(pad_token_id)(rows)
    targets = batch["labels"][:, 1:]
    supervised = targets != -100
    complexity = torch.tensor([row["complexity"] for row in rows]).unsqueeze(-1).expand_as(targets)

    def accuracy(hidden) -> dict:
        right = (model.lm_head(hidden)[:, :-1].argmax(-1) == targets) & supervised
        return {k: float(right[complexity == k].sum() / supervised[complexity == k].sum()) for k in (1, 2, 3)}

    natural = model(**batch, use_cache=False)
    depths = natural.depths[:, :-1]
    right = (natural.logits[:, :-1].argmax(-1) == targets) & supervised
    result = {"natural_accuracy": {k: float(right[complexity == k].sum() / supervised[complexity == k].sum()) for k in (1, 2, 3)},
              "natural_depth": {k: float(depths[(complexity == k) & supervised].float().mean()) for k in (1, 2, 3)},
              "forced": defaultdict(dict)}
    controller = model.model.depth_controller
    plan = controller.plan
    controller.plan = lambda prelude, token_mask, max_depth: FixedPlan(token_mask, max_depth)
    try:
        out = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                          output_iteration_readouts=True)
    finally:
        controller.plan = plan
    for t, hidden in enumerate([*out.iteration_readouts, out.last_hidden_state], start=1):
        result["forced"][t] = accuracy(hidden)
    assert len(result["forced"]) == depth
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--per_size", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model_dir in args.models:
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        rows = validation_rows(model_dir, tokenizer, args.per_size)
        result = profile(model, rows, tokenizer.pad_token_id)
        print(f"\n{model_dir} ({model.config.depth_mode}, iteration_loss_weight {model.config.iteration_loss_weight}); "
              f"{args.per_size} validation prompts per k, answer tokens teacher forced")
        print("  k   own depth  accuracy  | accuracy when every token runs t iterations, t = 1.."
              f"{model.config.max_depth}")
        for k in (1, 2, 3):
            forced = "  ".join(f"{result['forced'][t][k]:.2f}" for t in sorted(result["forced"]))
            print(f"  {k}   {result['natural_depth'][k]:5.2f}      {result['natural_accuracy'][k]:.2f}      |  {forced}")


if __name__ == "__main__":
    main()
