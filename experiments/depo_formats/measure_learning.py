"""Measure what a small ANIRA learns on this CPU in a fixed wall-clock budget (chooses the main job's defaults).

    python experiments/depo_formats/measure_learning.py --task depo --train 1 2 3 --params '{"num_nodes": 5}' --seconds 180
Prints, every `--every` seconds, the teacher-forced accuracy over all answer tokens (any valid next token
counts) and the mean depth at answer-predicting positions, per complexity, on held-out samples.
A plain loop (no Trainer) so that only the model and the task are measured.
"""

import argparse
import json
import time

import torch

import modeling_anira  # noqa: F401
from anira_tasks import TaskSpec, build_dataset_dict, load_tokenizer
from anira_study.evaluation import answer_records, summarize_by_complexity
from modeling_anira import AniraConfig, AniraForCausalLM


def pad(rows, pad_id):
    length = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), length), pad_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return ids, labels, mask


def probe(model, rows, tokenizer):
    """Teacher-forced accuracy over all answer tokens (any valid next token counts) and mean answer depth."""
    summary = summarize_by_complexity(answer_records(model, rows, tokenizer))["per_complexity"]
    return {c: (round(v["token_accuracy"], 2), round(v["mean_depth"], 2)) for c, v in summary.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="depo")
    parser.add_argument("--train", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--extra", type=int, nargs="*", default=[])
    parser.add_argument("--params", default="{}")
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--core", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--mode", default="fixed")
    parser.add_argument("--penalty", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overrides", default="", help="config overrides, e.g. 'depth_init_bias=6,halting_objective=act'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.task)
    data = build_dataset_dict(TaskSpec(task=args.task, train_sizes=args.train, extrapolation_sizes=args.extra,
                                       num_train=50_000, num_validation=64, num_test_per_size=64,
                                       task_params=json.loads(args.params)), tokenizer)
    train = data["train"].select_columns(["input_ids", "labels", "answer_start", "complexity"]).to_list()
    probe_rows = data["test_seen"].to_list() + (data["test_extrapolation"].to_list() if args.extra else [])
    config = AniraConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                         num_attention_heads=4, num_prelude_layers=1, num_core_layers=args.core, num_coda_layers=1,
                         max_depth=args.depth, depth_mode=args.mode, compute_penalty=args.penalty)
    if args.overrides:
        config.update_from_string(args.overrides)
        config.validate()
    model = AniraForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    start = last = time.time()
    step = 0
    while time.time() - start < args.seconds:
        batch = [train[(step * args.batch + i) % len(train)] for i in range(args.batch)]
        ids, labels, mask = pad(batch, tokenizer.pad_token_id)
        lr_scale = min(1.0, (step + 1) / 50)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_scale
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        lm_loss = out.lm_loss
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if time.time() - last > args.every:
            last = time.time()
            print(f"t={last - start:5.0f}s step={step} loss={lm_loss.item():.3f} {probe(model, probe_rows, tokenizer)}", flush=True)
    print(f"final step={step} {probe(model, probe_rows, tokenizer)}", flush=True)


if __name__ == "__main__":
    main()
