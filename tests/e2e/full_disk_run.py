"""Run as a script by test_write_faults.py: a training checkpoint, predictions and an export meet a full disk, made
with `RLIMIT_FSIZE` (a file may not grow past a few bytes; SIGXFSZ ignored, so the write fails with EFBIG). The limit
is set only while the command writes, after the libraries and the model are loaded. Prints one JSON object: each
scenario's error line and what the folder held afterwards."""

import json
import os
import resource
import signal
import sys
from pathlib import Path

from conftest import TINY_MODEL, train_args, write_dynamics_dataset
from transformers import TrainerCallback

from wmfactory.extras.errors import DataError

UNLIMITED = resource.getrlimit(resource.RLIMIT_FSIZE)


def limit(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, UNLIMITED[1]))


def unlimit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, UNLIMITED)


class DiskFillsAfter(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            limit(200_000)  # below model.safetensors (1.4 MB), above every log line


def error_of(run) -> str:
    try:
        run()
    except DataError as err:
        return str(err)
    finally:
        unlimit()
    return ""


def listing(folder: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, dirs, files in os.walk(folder) for name in dirs + files)


def main(work: str) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from wmfactory.commands import export as export_command
    from wmfactory.commands import predict as predict_command
    from wmfactory.commands.export import run_export
    from wmfactory.commands.predict import run_predict
    from wmfactory.train.checkpoints import newest_complete_checkpoint
    from wmfactory.train.tuner import run_exp

    data = write_dynamics_dataset(Path(work) / "data", rows=6)
    out = os.path.join(work, "out")
    result = {}
    args = train_args(out, data, finetuning_type="full", max_steps=6, save_strategy="steps", save_steps=2)
    result["train_error"] = error_of(lambda: run_exp(args, callbacks=[DiskFillsAfter(3)]))
    result["newest_checkpoint"] = newest_complete_checkpoint(out)
    result["checkpoints"] = sorted(name for name in os.listdir(out) if name.startswith("checkpoint-"))

    model = os.path.join(out, "checkpoint-2")  # a complete world model folder
    keys = {"model_name_or_path": model, "dataset": "dynamics", "dataset_dir": data}
    predictions = os.path.join(work, "pred")
    run_predict({**keys, "output_dir": predictions})
    result["predictions_before"] = listing(predictions)
    with open(os.path.join(predictions, "predictions.jsonl"), "rb") as f:
        result["predictions_jsonl_before"] = f.read().decode()
    write_into = predict_command._predict_into

    def full_while_predicting(*positional):
        limit(1_000)  # predictions.jsonl outgrows it after a few lines
        return write_into(*positional)

    predict_command._predict_into = full_while_predicting
    result["predict_error"] = error_of(lambda: run_predict({**keys, "output_dir": predictions,
                                                            "predict_mode": "rollout"}))
    predict_command._predict_into = write_into
    result["predictions_after"] = listing(predictions)
    with open(os.path.join(predictions, "predictions.jsonl"), "rb") as f:
        result["predictions_jsonl_after"] = f.read().decode()

    exported = os.path.join(work, "export")
    run_export({"model_name_or_path": model, "export_dir": exported})
    result["export_before"] = listing(exported)
    load = export_command.load_trained_world_model

    def full_after_loading(*positional):
        loaded = load(*positional)
        limit(200_000)
        return loaded

    export_command.load_trained_world_model = full_after_loading
    result["export_error"] = error_of(lambda: run_export({"model_name_or_path": os.path.join(out, "checkpoint-2"),
                                                          "export_dir": exported, "overwrite_output_dir": True}))
    export_command.load_trained_world_model = load
    result["export_after"] = listing(exported)
    result["work_after"] = sorted(os.listdir(work))
    from wmfactory import WorldModel

    WorldModel.from_pretrained(exported)  # the old export still loads
    print(json.dumps(result))


if __name__ == "__main__":
    assert TINY_MODEL
    main(sys.argv[1])
