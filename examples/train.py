"""Train an ANIRA model on a complexity-controlled task with the Hugging Face `Trainer`.

    python examples/train.py --model_name_or_path hub_configs/anira-o-depo \
        --config_overrides "hidden_size=64,intermediate_size=128,num_core_layers=1,max_depth=6" \
        --task depo --task_params '{"num_nodes": 8, "num_queries": 6, "supervise_all_queries": true, "edge_format": "token"}' \
        --train_sizes 1 2 3 --extrapolation_sizes 4 5 --output_dir outputs/anira-o-depo \
        --max_steps 15000 --per_device_train_batch_size 64 --learning_rate 3e-3 \
        --curriculum_accuracy 0.8 --compute_penalty 0.003 --penalty_gate_accuracy 0.9 --penalty_ramp_steps 1000

`--resume_from_checkpoint last` continues a run (penalty schedule and curriculum included); an output folder
that holds a finished run is refused unless `--overwrite_output_dir true`. Every argument is checked before
anything is built. The same command runs on several processes / GPUs unchanged:
`torchrun --nproc_per_node N examples/train.py ...` or `accelerate launch examples/train.py ...` (DDP; FSDP2
with `--fsdp --fsdp_config '{"transformer_layer_cls_to_wrap": ["AniraDecoderLayer"]}'` on GPUs).
Every rank builds the same data (the generators are seeded), the Trainer shards it, and only rank 0 writes.
On a machine without GPUs torchrun's processes train as one gloo DDP group, no device flag needed; there
`accelerate launch --num_processes N` starts one process, which is refused (`--multi_gpu` starts N).

The saved folder (weights, config, generation config, tokenizer, model card, `anira_data.json` with the
data spec, `probe_log.jsonl`) loads with `AutoModelForCausalLM.from_pretrained` and is what
`examples/evaluate_models.py` and `examples/analyze.py` read. The logic lives in `anira_study.trainer`.
"""

import modeling_anira  # noqa: F401  (registers the Auto classes)
from anira_study.cli import run_script
from anira_study.trainer import train_from_argv


def main(argv: list[str] | None = None):
    return train_from_argv(argv)


if __name__ == "__main__":
    run_script(main, "train.py")  # a user mistake: one line that names it, not a traceback
