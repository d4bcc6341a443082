#!/usr/bin/env bash
# The whole loop on a physical system: make data, train, predict, evaluate against the baselines.
#   bash examples/dynamics/run.sh        (about a minute on 2 CPU cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PY" examples/dynamics/make_oscillator_data.py --out saves/data_oscillator
"$PY" -m wmfactory.cli train examples/dynamics/oscillator.yaml
"$PY" -m wmfactory.cli predict --model_name_or_path saves/oscillator --dataset oscillator_test \
    --dataset_dir saves/data_oscillator --output_dir saves/oscillator/predict --predict_mode rollout --context_groups 4
"$PY" -m wmfactory.cli eval --model_name_or_path saves/oscillator --dataset oscillator_test \
    --dataset_dir saves/data_oscillator --output_dir saves/oscillator/eval --context_groups 4
echo "== predictions: saves/oscillator/predict/predictions.jsonl; report and plots: saves/oscillator/eval/"
