"""The dataset registry: `<dataset_dir>/dataset_info.json`, in LLaMA-Factory's schema."""

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from ..extras.errors import DataError

DATA_FILE_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass
class DatasetAttr:
    """One entry of dataset_info.json."""

    name: str
    load_from: str  # "file" | "hf_hub"
    path: str  # a local file or folder, or a hub dataset id
    formatting: str = "sharegpt"
    split: str = "train"
    subset: Optional[str] = None
    messages: str = "conversations"  # LLaMA-Factory's ShareGPT default; `messages` is read when it is absent
    embeddings: str = "embeddings"
    system: Optional[str] = None
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    system_tag: str = "system"
    observation_tag: str = "observation"
    function_tag: str = "function_call"


def get_dataset_attrs(names: list[str], dataset_dir: str) -> list[DatasetAttr]:
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    if not os.path.isfile(info_path):
        raise DataError(f"'{info_path}' not found: `dataset_dir` must hold a dataset_info.json.")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"'{info_path}' is not valid JSON: {err}") from None
    return [_parse_entry(name, info, dataset_dir, info_path) for name in names]


def _parse_entry(name: str, info: dict, dataset_dir: str, info_path: str) -> DatasetAttr:
    if not isinstance(info, dict):
        raise DataError(f"'{info_path}' must hold a mapping of dataset names to entries, got {type(info).__name__}.")
    if name not in info:
        known = ", ".join(sorted(info)) or "none"
        raise DataError(f"Dataset '{name}' is not registered in '{info_path}' (registered: {known}).")
    entry = info[name]

    def fail(reason: str) -> DataError:
        return DataError(f"Dataset '{name}' in '{info_path}': {reason}")

    if not isinstance(entry, dict):
        raise fail(f"the entry must be a mapping (file_name, columns, tags, ...), got {type(entry).__name__}.")
    for key in ("file_name", "hf_hub_url", "formatting", "split", "subset"):
        if key in entry and not isinstance(entry[key], str):
            raise fail(f"`{key}` must be a string, got {type(entry[key]).__name__}.")
    for key in ("columns", "tags"):
        if not isinstance(entry.get(key, {}), dict):
            raise fail(f"`{key}` must be a mapping of names to strings, got {type(entry[key]).__name__}.")
        bad = [k for k, v in entry.get(key, {}).items() if not isinstance(v, str)]
        if bad:
            raise fail(f"`{key}.{bad[0]}` must be a string.")
    formatting = entry.get("formatting", "sharegpt")
    if formatting != "sharegpt":
        raise fail(f"formatting '{formatting}' is not supported; world-model data is sharegpt.")
    if "file_name" in entry:
        attr = DatasetAttr(name, "file", os.path.join(dataset_dir, entry["file_name"]))
        if not os.path.exists(attr.path):
            raise DataError(f"Dataset '{name}': file '{attr.path}' not found.")
    elif "hf_hub_url" in entry:
        attr = DatasetAttr(name, "hf_hub", entry["hf_hub_url"])
    else:
        raise fail("needs `file_name` (or `hf_hub_url`).")
    attr.formatting = formatting
    attr.split = entry.get("split", "train")
    attr.subset = entry.get("subset")
    for key, value in entry.get("columns", {}).items():
        if key not in ("messages", "embeddings", "system"):
            raise DataError(f"Dataset '{name}': unknown column role '{key}' (use messages, embeddings, system).")
        setattr(attr, key, value)
    for key, value in entry.get("tags", {}).items():
        if not hasattr(attr, key) or not key.endswith("_tag"):
            raise DataError(f"Dataset '{name}': unknown tag '{key}'.")
        setattr(attr, key, value)
    return attr


def resolve_columns(attr: DatasetAttr, column_names: list[str]) -> DatasetAttr:
    """LLaMA-Factory's ShareGPT column is `conversations`; data in the OpenAI layout calls it `messages`. When the
    registered column is absent and `messages` is there, read that one."""
    if attr.messages not in column_names and "messages" in column_names:
        return dataclasses.replace(attr, messages="messages")
    return attr


def write_rows(output_dir: str, name: str, rows: list[dict], entry: dict) -> str:
    """`<output_dir>/<name>.jsonl` and its entry in `<output_dir>/dataset_info.json` (other entries kept)."""
    path = os.path.join(output_dir, f"{name}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    info_path = os.path.join(output_dir, "dataset_info.json")
    info = {}
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    info[name] = entry
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path
