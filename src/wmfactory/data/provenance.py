"""Which encoder made a dataset's vectors. `wmfactory encode` records it in the dataset's entry of
dataset_info.json (`"encoder": {"name", "revision", "type", "library", "pooling", "normalize", "dimension",
"dtype"}`), in encoder.json beside the files and in each .safetensors file's metadata. Vectors of two encoders live
in different spaces, so a run that mixes them is warned about here."""

import json
import os
from typing import Any, Optional

from ..extras.logging import get_logger

logger = get_logger(__name__)
ENCODER_RECORD_FILE = "encoder.json"
# what makes two encodings comparable (the wmfactory version that wrote them does not)
ENCODER_IDENTITY = ("name", "revision", "type", "library", "pooling", "normalize", "dimension", "dtype")


def encoder_identity(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in ENCODER_IDENTITY}


def describe_encoder(record: dict[str, Any]) -> str:
    """`name@revision (type, pooling mean, normalized, dimension 384, float32)`."""
    name = record.get("name", "?") + (f"@{record['revision']}" if record.get("revision") else "")
    parts = [str(record.get("type")), f"{record.get('library')}", f"pooling {record.get('pooling')}",
             "normalized" if record.get("normalize") else "not normalized", f"dimension {record.get('dimension')}",
             str(record.get("dtype"))]
    return f"{name} ({', '.join(parts)})"


def recorded_encoders(names: list[str], dataset_dir: str) -> dict[str, dict[str, Any]]:
    """The encoder record of each named dataset that has one in `<dataset_dir>/dataset_info.json`. A registry that
    cannot be read gives {} (the registry reports it itself, with its reason)."""
    try:
        with open(os.path.join(dataset_dir, "dataset_info.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    found = {}
    for name in names:
        entry = info.get(name)
        record = entry.get("encoder") if isinstance(entry, dict) else None
        if isinstance(record, dict):
            found[name] = record
    return found


def warn_if_encoders_differ(names: list[str], dataset_dir: str) -> Optional[str]:
    """Warn (and return the warning) when datasets of one run were encoded by different encoders."""
    records = recorded_encoders(names, dataset_dir)
    if len({json.dumps(encoder_identity(r), sort_keys=True) for r in records.values()}) < 2:
        return None
    detail = "; ".join(f"dataset '{name}': {describe_encoder(record)}" for name, record in records.items())
    message = (f"the datasets of this run were encoded with different encoders, so their vectors live in different "
               f"spaces: {detail}. Encode them all with one encoder.")
    logger.warning(message)
    return message
