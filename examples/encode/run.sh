#!/usr/bin/env bash
# From raw sentences to a world model and back to sentences: make the raw rows, encode them, train a few steps,
# roll out, and read the rolled-out vectors as the nearest sentences of the story.
#   bash examples/encode/run.sh                          (offline: the tiny random BERT of this repository)
#   ENCODER=sentence-transformers/all-MiniLM-L6-v2 bash examples/encode/run.sh      (a real encoder, from the hub)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-.venv/bin/python}"
ENCODER="${ENCODER:-examples/models/tiny-bert}"
STEPS="${STEPS:-300}"
OUT=saves/encode_story
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
[ "$ENCODER" = examples/models/tiny-bert ] && export HF_HUB_OFFLINE=1

"$PY" examples/encode/make_story_data.py --out "$OUT/raw"
# one file per sentence in $OUT/encoded/embeddings/, the rows and dataset_info.json beside them
"$PY" -m wmfactory.cli encode --encoder "$ENCODER" --normalize --dataset story --dataset_dir "$OUT/raw" \
    --output_dir "$OUT/encoded"
HF_HUB_OFFLINE=1 "$PY" -m wmfactory.cli train --stage wm --model_name_or_path examples/models/tiny-llama \
    --dataset story --dataset_dir "$OUT/encoded" --output_dir "$OUT/model" --finetuning_type lora --lora_rank 16 \
    --lm_loss_weight 0 --embedding_norm standard --max_steps "$STEPS" --learning_rate 3e-3 --per_device_train_batch_size 8 \
    --logging_steps 100 --save_strategy no --report_to none --overwrite_output_dir --disable_tqdm
HF_HUB_OFFLINE=1 "$PY" -m wmfactory.cli predict --model_name_or_path "$OUT/model" --dataset story \
    --dataset_dir "$OUT/encoded" --output_dir "$OUT/predict" --predict_mode rollout --context_groups 3
# each rolled-out vector as its 3 nearest sentences (cosine), beside the sentence that was to come
"$PY" -m wmfactory.cli retrieve --bank "$OUT/encoded" --predictions "$OUT/predict/predictions.jsonl" --top_k 3
