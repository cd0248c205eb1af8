"""Candidate speed-ups of a study training step, each against the step as it is.

    python benchmarks/model/bench_step_variants.py                      # study recipes: depo anira-e, brevo anira-o
    python benchmarks/model/bench_step_variants.py --runs depo:fixed-6 --steps 6
    python benchmarks/model/bench_step_variants.py --runs depo:fixed-6 depo:anira-e brevo:fixed-6 brevo:anira-e \
        --arms "as is" "compiled layers" "compiled model" --steps 6 --repeats 4

A step is a study run's step on its own packed batches (`anira_study.study`: the model's config, the task's
training rows, 64 samples, PackedAnswerCollator): forward with the recipe's losses, backward, clipping at 1.0,
fused AdamW at learning rate 0 (so every arm sees the same weights and depths), fresh initialisation. The arms
alternate step by step in this one process, so drifts of machine speed hit them alike:

- `as is`: the model's own code;
- `fused`: the q, k, v projections as one matrix multiply (weights concatenated per call) and the gate and up
  projections as one, and RMSNorm through `torch.nn.functional.rms_norm` (float64 results equal within 1e-16);
- `micro N`: the 64 samples as 64 / N micro-batches of N, gradients accumulated (the same gradient);
- `compiled layers`: a copy of the model with `--compile_layers` (anira_study.trainer.compile_layers; adopted, opt-in);
- `compiled model`: a copy with `--compile_model` (anira_study.trainer.compile_model: the whole training forward one
  graph; every model but ANIRA-E with router_gradient="next", not run for that one; adopted, opt-in).

Reported: the median CPU time of a step per arm (this process's, one torch thread), and the wall time of each arm's
first step (where the compiled arms compile).
"""

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import HfArgumentParser, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import modeling_anira  # noqa: E402
from anira_study import study  # noqa: E402
from anira_study.arguments import DataArguments, ModelArguments, OutputArguments, ScheduleArguments  # noqa: E402
from anira_study.data import PackedAnswerCollator, load_data  # noqa: E402
from modeling_anira import depth_control, modeling_anira as layers  # noqa: E402


def _plain(*modules) -> bool:
    return all(type(m) is nn.Linear and m.bias is None for m in modules)


def fused_mlp(self, x):
    gate, up = F.linear(x, torch.cat((self.gate_proj.weight, self.up_proj.weight))).chunk(2, dim=-1)
    return self.down_proj(self.act_fn(gate) * up)


def fused_attention(self, hidden_states, position_embeddings, attention_mask=None, cache=None, cache_slot=None, **kwargs):
    assert cache is None and _plain(self.q_proj, self.k_proj, self.v_proj)
    weight = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
    sizes = (self.q_proj.out_features, self.k_proj.out_features, self.v_proj.out_features)
    q, k, v = F.linear(hidden_states, weight).split(sizes, dim=-1)
    shape = (*hidden_states.shape[:-1], -1, self.head_dim)
    query = layers.apply_rotary(q.view(shape).transpose(1, 2), *position_embeddings)
    key = layers.apply_rotary(k.view(shape).transpose(1, 2), *position_embeddings)
    return self.attend(query, key, v.view(shape).transpose(1, 2), attention_mask, **kwargs)


def fused_norm(self, x):
    return F.rms_norm(x, self.weight.shape, self.weight, self.variance_epsilon)


AS_IS = (layers.AniraMLP.forward, layers.AniraAttention.forward, depth_control.AniraRMSNorm.forward)
FUSED = (fused_mlp, fused_attention, fused_norm)


def use(functions) -> None:
    layers.AniraMLP.forward, layers.AniraAttention.forward, depth_control.AniraRMSNorm.forward = functions


def setup(task: str, model_name: str, steps: int):
    torch.manual_seed(0)
    config, tokenizer = study.model_config(task, model_name)
    model = modeling_anira.AniraForCausalLM(config).train()
    argv = study.training_args(task, model_name, 0, Path("unused"), Path("unused"))
    argv[argv.index("--num_train") + 1] = str(64 * steps)
    parser = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments, OutputArguments))
    data_args = parser.parse_args_into_dataclasses(args=argv)[1]
    train = load_data(data_args)[0]["train"]
    batches = [[train[i] for i in range(64 * s, 64 * s + 64)] for s in range(steps)]
    return model, PackedAnswerCollator(tokenizer.pad_token_id), batches


ARMS = ("as is", "fused", "micro 32", "micro 16", "compiled layers", "compiled model")


def measure(task: str, model_name: str, steps: int, repeats: int, names=ARMS) -> dict:
    from anira_study.trainer import compile_layers, compile_model, whole_forward_problem

    model, collator, batches = setup(task, model_name, steps)
    compiled = compile_layers(copy.deepcopy(model))
    whole = compile_model(copy.deepcopy(model)) if whole_forward_problem(model.config) is None else None
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=0.0, fused=True) for m in (model, compiled, whole) if m}

    def step(net, rows, micro: int) -> None:
        for start in range(0, len(rows), micro):
            (net(**collator(rows[start:start + micro])).loss * micro / len(rows)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizers[id(net)].step()
        optimizers[id(net)].zero_grad(set_to_none=True)

    arms = {"as is": (model, AS_IS, 64), "fused": (model, FUSED, 64), "micro 32": (model, AS_IS, 32),
            "micro 16": (model, AS_IS, 16), "compiled layers": (compiled, AS_IS, 64), "compiled model": (whole, AS_IS, 64)}
    arms = {arm: value for arm, value in arms.items() if arm in names and value[0] is not None}
    times = {arm: [] for arm in arms}
    first = {}
    for arm, (net, functions, micro) in arms.items():  # warm-up (the compiled arms compile), two steps per arm
        use(functions)
        for index, rows in enumerate(batches[:2]):
            start = time.perf_counter()
            step(net, rows, micro)
            if index == 0:
                first[arm] = round(time.perf_counter() - start, 1)
    for _ in range(repeats):
        for rows in batches:
            for arm, (net, functions, micro) in arms.items():
                use(functions)
                start = time.process_time()
                step(net, rows, micro)
                times[arm].append(time.process_time() - start)
    use(AS_IS)
    median = {arm: round(statistics.median(t) * 1e3, 1) for arm, t in times.items()}
    return {"median ms": median, "steps per arm": len(times[next(iter(times))]), "first step s": first,
            "speed-up over as is": {arm: round(median["as is"] / m, 3) for arm, m in median.items()} if "as is" in median else {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["depo:anira-e", "brevo:anira-o"], help="task:model of the study")
    parser.add_argument("--steps", type=int, default=6, help="distinct batches")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the batches")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="the arms to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run in args.runs:
        task, model_name = run.split(":")
        results[run] = measure(task, model_name, args.steps, args.repeats, args.arms)
        print(run, json.dumps(results[run]), flush=True)


if __name__ == "__main__":
    main()
