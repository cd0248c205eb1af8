#!/usr/bin/env bash
# usage: train.sh NAME(anira-e-depo|...) TAG WEIGHT [SEED]   recipe of NAME + iteration_loss_weight=WEIGHT
# Writes RUNS/TAG (RUNS: the folder the runs are trained in, default outputs/iteration_loss under the repository).
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
name=$1; tag=$2; w=$3; seed=${4:-}
out=${RUNS:-outputs/iteration_loss}/$tag
resume=""; ls -d $out/checkpoint-* >/dev/null 2>&1 && resume="--resume_from_checkpoint last"
mapfile -t args < <(.venv/bin/python - "$name" "$seed" <<'PY'
import json, sys
a = json.load(open(f"hub_configs/{sys.argv[1]}/recipe.json"))["train_args"]
if sys.argv[2]:
    a[a.index("--seed") + 1] = sys.argv[2]
print("\n".join(a))
PY
)
exec .venv/bin/python examples/train.py "${args[@]}" --config_overrides "iteration_loss_weight=$w" \
  --output_dir $out --use_cpu true --save_total_limit 2 --save_steps 1000 $resume
