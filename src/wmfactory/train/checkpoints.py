"""Which checkpoint to resume from: the newest one that was written completely (LLaMA-Factory's resume rule).

A job killed while writing `checkpoint-N/` leaves a folder that looks like a checkpoint. A checkpoint is complete
when `trainer_state.json` and the world model's `config.json` parse (the config is written last, after the Trainer's
own files, for a LoRA run), the weights, optimizer and scheduler states are there, and every weights file in the
folder is whole (a safetensors header that matches the file, a torch zip archive with its central
directory)."""

import json
import os
import re
from typing import Optional

from ..extras.errors import ConfigError
from ..extras.logging import get_logger
from ..model.files import damaged_weights
from .lock import LOCK_FILE

logger = get_logger(__name__)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def incomplete_reason(path: str) -> Optional[str]:
    """None for a complete checkpoint folder, else what is wrong with it."""
    for name in ("trainer_state.json", "config.json"):
        try:
            with open(os.path.join(path, name), encoding="utf-8") as f:
                json.load(f)
        except (OSError, ValueError):
            return f"{name} is missing or unreadable"
    names = os.listdir(path)
    if not {"model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors"} & set(names):
        return "the model weights are missing"
    if not any(name.startswith("global_step") for name in names):  # DeepSpeed keeps its states in global_stepN/
        for name in ("optimizer.pt", "scheduler.pt"):
            if name not in names:
                return f"{name} is missing"
    return damaged_weights(path)


def newest_complete_checkpoint(output_dir: str) -> Optional[str]:
    if not os.path.isdir(output_dir):
        return None
    numbered = sorted(
        ((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT.match(name))),
        reverse=True,
    )
    for _, name in numbered:
        path = os.path.join(output_dir, name)
        if not os.path.isdir(path):
            continue
        reason = incomplete_reason(path)
        if reason is None:
            return path
        logger.warning(f"Skipping {path}: {reason} (written by a run that stopped while saving).")
    return None


def resolve_resume(training_args) -> None:
    """Resume from the newest complete checkpoint in `output_dir` unless told to overwrite it; sets
    `resume_from_checkpoint`. `resume_from_checkpoint: true` asks for the newest one explicitly."""
    output_dir = training_args.output_dir
    if str(training_args.resume_from_checkpoint).lower() == "true":
        found = newest_complete_checkpoint(output_dir)
        if found is None:
            raise ConfigError(f"`resume_from_checkpoint: true` but '{output_dir}' holds no complete checkpoint.")
        training_args.resume_from_checkpoint = found
    if not training_args.do_train or training_args.overwrite_output_dir or not os.path.isdir(output_dir):
        return
    if training_args.resume_from_checkpoint is not None:
        return
    last_checkpoint = newest_complete_checkpoint(output_dir)
    if last_checkpoint is not None:
        training_args.resume_from_checkpoint = last_checkpoint
        logger.info(f"Resuming training from {last_checkpoint} (set `overwrite_output_dir: true` to start afresh).")
    elif any(name not in ("runs", LOCK_FILE) and not name.startswith("checkpoint-")
             for name in os.listdir(output_dir)):
        raise ConfigError(
            f"Output directory '{output_dir}' already exists and is not empty, and holds no checkpoint. "
            "Set `overwrite_output_dir: true` to train into it anyway."
        )


def checkpoint_step(path: Optional[str]) -> int:
    """The step a checkpoint was saved at (0 for no checkpoint)."""
    if not path:
        return 0
    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
        return int(json.load(f).get("global_step", 0))
