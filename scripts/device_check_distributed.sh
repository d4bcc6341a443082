#!/usr/bin/env bash
# Device check for the distributed engines, on one GPU with the offline tiny model (about 2 minutes):
# two training steps each under FSDP (accelerate), DeepSpeed ZeRO-2 and DeepSpeed ZeRO-3, each followed by a
# reload of its output folder with WorldModel.from_pretrained. Needs a CUDA GPU; DeepSpeed runs are reported as
# SKIPPED when `import deepspeed` fails. Exit status 1 when a run fails.
#
#   bash scripts/device_check_distributed.sh        (PYTHON=... to choose the interpreter)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
cat > "$WORK/base.yaml" <<YAML
stage: wm
model_name_or_path: examples/models/tiny-llama
finetuning_type: lora
dataset: wm_demo
dataset_dir: data
max_steps: 2
save_steps: 2
logging_steps: 1
per_device_train_batch_size: 2
bf16: true
report_to: none
overwrite_output_dir: true
disable_tqdm: true
YAML
status=0

check() {  # name, output_dir, command...
    local name=$1 out=$2
    shift 2
    echo "== $name"
    local start=$SECONDS
    if "$@" > "$WORK/$name.log" 2>&1 && "$PY" -c "
from wmfactory import WorldModel
import json
m = WorldModel.from_pretrained('$out')
log = [json.loads(l) for l in open('$out/trainer_log.jsonl')]
print('ok: steps', [e['current_steps'] for e in log], 'embedding_loss', [round(e['embedding_loss'], 4) for e in log])
" >> "$WORK/$name.log" 2>&1; then
        tail -n 1 "$WORK/$name.log"
        echo "   ($((SECONDS - start)) s)"
    else
        echo "FAILED: $name; last lines of $WORK/$name.log:"
        tail -n 25 "$WORK/$name.log"
        status=1
    fi
}

check fsdp "$WORK/fsdp" "$PY" -m accelerate.commands.launch --config_file examples/accelerate/fsdp_config.yaml \
    -m wmfactory.train.tuner "$WORK/base.yaml" output_dir="$WORK/fsdp"
if "$PY" -c "import deepspeed" > /dev/null 2>&1; then
    for stage in 2 3; do
        check "zero$stage" "$WORK/zero$stage" "$PY" -m torch.distributed.run --nproc_per_node 1 --master_port 2950$stage \
            -m wmfactory.train.tuner "$WORK/base.yaml" deepspeed="examples/deepspeed/ds_z${stage}_config.json" \
            output_dir="$WORK/zero$stage"
    done
else
    echo "SKIPPED: DeepSpeed ZeRO-2/3 (import deepspeed failed: install it to run these checks)"
fi
exit $status
