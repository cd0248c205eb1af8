#!/usr/bin/env bash
# usage: experiments/seeds/train.sh NAME SEED OUTPUT_DIR [EXTRA TRAIN ARGS...]   (from the repository root)
# Trains the recipe shipped in hub_configs/NAME/recipe.json with only the training seed changed (model
# initialisation and data order; the task data, hence every split, stays the same). Resumes from the last
# checkpoint in OUTPUT_DIR. Extra arguments are appended to the recipe's (e.g. --depth_hold_accuracy 0.9). Then: python examples/evaluate_models.py --models OUTPUT_DIR --names seedSEED
set -e
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
name=$1; seed=$2; out=$3; shift 3
resume=""; ls -d "$out"/checkpoint-* >/dev/null 2>&1 && resume="--resume_from_checkpoint last"
mapfile -t args < <(python - "$name" <<'PY'
import json, sys
print("\n".join(json.load(open(f"hub_configs/{sys.argv[1]}/recipe.json"))["train_args"]))
PY
)
exec python examples/train.py "${args[@]}" --seed "$seed" --output_dir "$out" --save_total_limit 2 $resume "$@"
