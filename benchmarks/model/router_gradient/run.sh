#!/usr/bin/env bash
# ANIRA-E trained with the exact straight-through router gradient ("full") and with the cheaper estimator
# ("next"), everything else equal: the main job's DEPO recipe (3,000 steps, k = 1-3, curriculum, penalty 0.03
# gated on validation accuracy 0.7). Writes <out>/{full,next}/ (probe logs, model, timing) for summarize.py.
#   bash benchmarks/model/router_gradient/run.sh outputs/router_gradient full   # one run per core
#   bash benchmarks/model/router_gradient/run.sh outputs/router_gradient next
set -e
out=$1; estimator=$2
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$out"
/usr/bin/time -f "%e %U" -o "$out/$estimator.time" python examples/train.py \
  --model_name_or_path hub_configs/anira-e-depo --from_scratch true \
  --config_overrides "depth_init_bias=0.0,router_gradient=$estimator" \
  --task depo --task_params '{"num_nodes": 8, "num_queries": 6, "supervise_all_queries": true, "edge_format": "token"}' \
  --train_sizes 1 2 3 --extrapolation_sizes 4 5 --num_train 30000 --num_test_per_size 250 \
  --max_steps 3000 --per_device_train_batch_size 64 --learning_rate 3e-3 --warmup_steps 200 --lr_scheduler_type cosine \
  --weight_decay 0.0 --max_grad_norm 1.0 --seed 0 --curriculum_accuracy 0.8 --compute_penalty 0.03 \
  --penalty_gate_accuracy 0.7 --penalty_ramp_steps 1000 --probe_steps 100 --probe_per_size 64 --logging_steps 100 \
  --save_strategy no --report_to none --use_cpu true --disable_tqdm true --output_dir "$out/$estimator"
