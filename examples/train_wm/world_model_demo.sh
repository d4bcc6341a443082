#!/usr/bin/env bash
# World-model demo: trains the tiny offline Llama (or MODEL_NAME) on data/wm_demo.json to predict the next
# embedding vector (day 1 -> day 2), then prints where the outputs are and how the embedding loss moved.
#
#   bash examples/train_wm/world_model_demo.sh                                   # tiny model, offline, < 1 min on CPU
#   MODEL_NAME=meta-llama/Llama-3.2-1B bash examples/train_wm/world_model_demo.sh  # the real 1B model (hub download)
#   OUTPUT_DIR=saves/other PYTHON=python3 bash examples/train_wm/world_model_demo.sh
set -euo pipefail

# Run from the repository root whatever the caller's working directory.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
MODEL_NAME="${MODEL_NAME:-examples/models/tiny-llama}"
OUTPUT_DIR="${OUTPUT_DIR:-saves/wm_demo}"

# The tiny model is a local folder: keep the run off the network. A hub id needs the hub, so leave it alone.
# One CPU thread suits it too: faster here, and 50x faster than torch's default on a busy machine
# (benchmarks/cpu_threads.py).
if [[ "$MODEL_NAME" == "examples/models/tiny-llama" ]]; then
    export HF_HUB_OFFLINE=1
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

echo "== Training world model: model=$MODEL_NAME output=$OUTPUT_DIR python=$PYTHON"
start=$(date +%s)
"$PYTHON" -m wmfactory.train.tuner \
    --stage wm \
    --model_name "$MODEL_NAME" \
    --dataset wm_demo \
    --dataset_dir data \
    --embedding_loss_weight 1.0 \
    --world_model_loss_type l2 \
    --embedding_dim 4 \
    --output_dir "$OUTPUT_DIR" \
    --overwrite_output_dir \
    --finetuning_type lora \
    --lora_rank 8 \
    --learning_rate 1e-3 \
    --num_train_epochs 30 \
    --per_device_train_batch_size 2 \
    --logging_steps 5 \
    --save_steps 1000 \
    --plot_loss \
    --report_to none
end=$(date +%s)

case "$OUTPUT_DIR" in
    /*) output_path="$OUTPUT_DIR" ;;
    *) output_path="$PWD/$OUTPUT_DIR" ;;
esac
echo
echo "== Done in $((end - start)) s. Outputs in $output_path:"
echo "   adapter_model.safetensors, adapter_config.json  LoRA weights of the LLM, projector, head and statistics"
echo "   config.json  the world model's configuration (nests the LLM's own)"
echo "   trainer_log.jsonl, trainer_state.json, train_results.json  logs and metrics"
echo "   training_loss.png, training_embedding_loss.png, training_lm_loss.png  loss curves"
echo "   checkpoint-*/  the last checkpoint (optimizer state included, for resuming)"

"$PYTHON" - "$OUTPUT_DIR/trainer_log.jsonl" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
points = [(r["current_steps"], r["embedding_loss"]) for r in records if "embedding_loss" in r]
if not points:
    sys.exit(f"no embedding_loss in {sys.argv[1]}")
# each line is the mean over the steps since the previous one; step 1 alone is one batch, so compare windows
windows = [p for p in points if p[0] > 1] or points
(first_step, first), (last_step, last) = windows[0], windows[-1]
print(f"== embedding_loss: {first:.3g} at step {first_step} -> {last:.3g} at step {last_step}")
PY
