"""Train an ANIRA model on a complexity-controlled task with the Hugging Face `Trainer`.

    python examples/train.py --model_name_or_path hub_configs/anira-o-clrs \
        --config_overrides "hidden_size=64,intermediate_size=128,num_core_layers=1,max_depth=4" \
        --task minimum --task_params '{"max_key": 7}' --train_sizes 2 3 4 --extrapolation_sizes 5 6 \
        --output_dir outputs/anira-o-minimum --max_steps 2000 --per_device_train_batch_size 32 --learning_rate 1e-3 \
        --compute_penalty 0.003 --penalty_warmup_steps 200 --penalty_ramp_steps 300 --penalty_gate_accuracy 0.8

`--resume_from_checkpoint last` (or a checkpoint folder) continues a run, penalty schedule included.

The same command runs on several processes / GPUs unchanged: `torchrun --nproc_per_node N examples/train.py ...`
or `accelerate launch examples/train.py ...` (DDP; FSDP with `--fsdp "full_shard auto_wrap"
--fsdp_config '{"transformer_layer_cls_to_wrap": ["AniraDecoderLayer"]}'`). Every rank builds the same
data (the generators are seeded), the Trainer shards it, and only rank 0 writes files.

The saved folder (weights, config, generation config, tokenizer, model card, `anira_data.json` with the
data spec, `probe_log.jsonl`) loads with `AutoModelForCausalLM.from_pretrained` and is what
`examples/evaluate.py` and `examples/analyze.py` read.
"""

import logging
import os
import sys
from pathlib import Path

# examples/evaluate.py would shadow the `evaluate` library for the scripts of this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import transformers  # noqa: E402
from transformers import HfArgumentParser, Trainer, TrainingArguments  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from anira_tasks.training import (DataArguments, ModelArguments, ScheduleArguments, build_trainer,  # noqa: E402
                                  save_outputs)

def main(argv: list[str] | None = None) -> Trainer:
    parser = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, schedule_args, training_args = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, schedule_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=training_args.get_process_log_level())
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    trainer, data, data_spec, tokenizer = build_trainer(model_args, data_args, schedule_args, training_args)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint == "last":
        checkpoint = get_last_checkpoint(training_args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, data_spec, model_args, data_args, train_result)
    if training_args.push_to_hub:
        trainer.create_model_card = lambda **kwargs: None  # keep the ANIRA card save_outputs wrote as README.md
        trainer.push_to_hub(commit_message="ANIRA trained with examples/train.py")
    return trainer


if __name__ == "__main__":
    main()
