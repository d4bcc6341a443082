#!/usr/bin/env bash
# The whole loop on a physical system: make data, train, predict, evaluate against the baselines.
#   bash examples/dynamics/run.sh        (61 s on 2 idle x86_64 CPU cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-.venv/bin/python}"
# one CPU thread suits the tiny model (50x faster than the default on a busy machine: benchmarks/cpu_threads.py)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$PY" examples/dynamics/make_oscillator_data.py --out saves/data_oscillator
"$PY" -m wmfactory.cli train examples/dynamics/oscillator.yaml
"$PY" -m wmfactory.cli predict --model_name_or_path saves/oscillator --dataset oscillator_test \
    --dataset_dir saves/data_oscillator --output_dir saves/oscillator/predict --predict_mode rollout --context_groups 4
"$PY" -m wmfactory.cli eval --model_name_or_path saves/oscillator --dataset oscillator_test \
    --dataset_dir saves/data_oscillator --output_dir saves/oscillator/eval --context_groups 4
echo "== predictions: saves/oscillator/predict/predictions.jsonl; report and plots: saves/oscillator/eval/"
