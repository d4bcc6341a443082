"""The user-facing entry points on the seed data: `wmfactory train cfg.yaml`, the tuner's flags, and errors."""

import json
import shutil

from conftest import REPO, TINY_MODEL

from wmfactory import cli
from wmfactory.train import tuner


def seed_data(tmp_path):
    return shutil.copytree(REPO / "data", tmp_path / "data")


def test_yaml_training_writes_the_documented_outputs(tmp_path, capsys):
    data_dir = seed_data(tmp_path)
    out = tmp_path / "saves" / "wm"
    config = tmp_path / "wm.yaml"
    config.write_text(f"""### model
model_name_or_path: {TINY_MODEL}

### method
stage: wm
do_train: true
finetuning_type: lora
lora_rank: 4
lora_target: all

### dataset
dataset: wm_demo,embedding_demo
dataset_dir: {data_dir}
cutoff_len: 256
max_samples: 100
overwrite_cache: true
preprocessing_num_workers: 1

### output
output_dir: {out}
logging_steps: 2
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
learning_rate: 1.0e-3
num_train_epochs: 2.0
lr_scheduler_type: cosine
report_to: none
""")
    assert cli.main(["train", str(config), "embedding_loss_weight=2.0", "save_steps=2"]) == 0
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    # 7 rows, batch 2 x accumulation 2 -> 2 optimizer steps per epoch, 4 in all, logged every 2 and at the first
    assert [entry["current_steps"] for entry in log] == [1, 2, 4]
    for entry in log:
        assert {"current_steps", "total_steps", "loss", "embedding_loss", "lm_loss", "learning_rate", "epoch",
                "elapsed_time"} <= set(entry)
        assert entry["total_steps"] == 4
        assert abs(entry["loss"] - (2.0 * entry["embedding_loss"] + 0.1 * entry["lm_loss"])) < 1e-3 * entry["loss"]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["embedding_loss"] for h in history if "embedding_loss" in h] == [e["embedding_loss"] for e in log]
    for name in ("training_loss.png", "training_embedding_loss.png", "training_lm_loss.png", "train_results.json",
                 "config.json", "adapter_model.safetensors", "checkpoint-4/config.json",
                 "checkpoint-4/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "training_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_command_line_and_dimension_error(tmp_path, capsys):
    data_dir = seed_data(tmp_path)
    flags = ["--stage", "wm", "--model_name", TINY_MODEL, "--dataset", "wm_demo", "--dataset_dir", str(data_dir),
             "--embedding_loss_weight", "1.0", "--world_model_loss_type", "l2", "--output_dir"]
    ok = flags + [str(tmp_path / "ok"), "--embedding_dim", "4", "--max_steps", "2", "--report_to", "none",
                  "--bf16", "--logging_steps", "1", "--finetuning_type", "lora", "--lora_rank", "8"]
    assert tuner.main(ok) == 0
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["embedding_dim"] == 4

    capsys.readouterr()
    assert tuner.main(flags + [str(tmp_path / "bad"), "--embedding_dim", "8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("wmfactory: error: ") and "`embedding_dim` is 8" in err and "dimension 4" in err
    assert "sample_embedding_1.json" in err and "Traceback" not in err

    assert cli.main(["train", "--model_name", TINY_MODEL, "--dataset", "wm_demo", "--output_dir",
                     str(tmp_path / "x"), "--lerning_rate", "1"]) == 1
    assert "Did you mean `learning_rate`?" in capsys.readouterr().err


def test_version(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("wmfactory ")


def test_each_command_has_its_own_help(capsys):
    assert cli.main(["eval", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: wmfactory eval ") and "score predictions" in text
    assert text.index("predict, eval, plan and export") < text.index("--context_groups") < text.index("model: the base LLM")
    assert "learning_rate" not in text
    assert cli.main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: wmfactory train ")
    assert text.index("--embedding_loss_weight") < text.index("training: Hugging Face's TrainingArguments") < (
        text.index("--learning_rate"))
