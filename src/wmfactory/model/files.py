"""Whether the weights files of a folder are whole: a safetensors header that matches its file, a torch zip archive
with its central directory. A job killed while writing leaves files that look like weights but are not."""

import os
import zipfile
from typing import Optional

from safetensors import safe_open


def damaged_weights(folder: str) -> Optional[str]:
    """None when every weights file in `folder` is whole, else which one is not and why."""
    for name in sorted(os.listdir(folder)):
        file = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt") as weights:
                    weights.keys()
            except Exception as err:  # safetensors raises its own error types for a cut file
                return f"{name} is damaged ({err})"
        elif name.endswith((".pt", ".bin", ".pth")) and not zipfile.is_zipfile(file):
            return f"{name} is damaged (not a complete archive)"
    return None
