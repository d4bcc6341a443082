"""Which checkpoint to resume from: the newest one that was written completely.

A job killed while writing `checkpoint-N/` leaves a folder that looks like a checkpoint. The Trainer writes
`trainer_state.json` last, so a checkpoint is complete when that file parses and every weights file in the folder
is whole (a safetensors header that matches the file, a torch zip archive with its central directory)."""

import json
import os
import re
import zipfile
from typing import Optional

from safetensors import safe_open

from ..extras.logging import get_logger

logger = get_logger(__name__)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def incomplete_reason(path: str) -> Optional[str]:
    """None for a complete checkpoint folder, else what is wrong with it."""
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable"
    names = os.listdir(path)
    if "world_model.safetensors" not in names:
        return "world_model.safetensors is missing"
    for name in names:
        file = os.path.join(path, name)
        if name.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt") as weights:
                    weights.keys()
            except Exception as err:  # safetensors raises its own error types for a cut file
                return f"{name} is damaged ({err})"
        elif name.endswith((".pt", ".bin", ".pth")) and not zipfile.is_zipfile(file):
            return f"{name} is damaged (not a complete archive)"
    return None


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
