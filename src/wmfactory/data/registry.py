"""The dataset registry: `<dataset_dir>/dataset_info.json`, in LLaMA-Factory's schema."""

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from ..extras.atomic import write_text
from ..extras.errors import DataError

DATA_FILE_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


# the tags of OpenAI-style messages (`role`/`content`, `user`/`assistant`/`system`): those of the rows wmfactory writes
# (`encode`, `from_dataframe`) and of a row given from Python without ShareGPT's from/value
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system"}


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
    allow_outside_media_dir: bool = False  # rows may name files outside media_dir (absolute paths, `..`, symlinks)
    named_columns: tuple[str, ...] = ()  # the column roles the entry names itself (no fallback for those)


def get_dataset_attrs(names: list[str], dataset_dir: str) -> list[DatasetAttr]:
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    if not os.path.isfile(info_path):
        raise DataError(f"'{info_path}' not found: `dataset_dir` must hold a dataset_info.json.")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except UnicodeDecodeError as err:
        raise DataError(f"'{info_path}' is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}): "
                        "save it as UTF-8.") from None
    except json.JSONDecodeError as err:
        raise DataError(f"'{info_path}' is not valid JSON: {err}") from None
    except (ValueError, RecursionError) as err:  # a number of more digits than Python converts, or deep nesting
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(":")[0]
        raise DataError(f"'{info_path}' is not valid JSON: {reason}.") from None
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
    if not isinstance(entry.get("allow_outside_media_dir", False), bool):
        raise fail("`allow_outside_media_dir` must be true or false.")
    formatting = entry.get("formatting", "sharegpt")
    if formatting != "sharegpt":
        raise fail(f"formatting '{formatting}' is not supported; world-model data is sharegpt.")
    if "file_name" in entry:
        attr = DatasetAttr(name, "file", os.path.join(dataset_dir, entry["file_name"]))
        if not os.path.exists(attr.path):
            raise DataError(f"Dataset '{name}': file '{attr.path}' not found.")
        if not (os.path.isfile(attr.path) or os.path.isdir(attr.path)):  # /dev/null, a pipe, a socket
            raise DataError(f"Dataset '{name}': '{attr.path}' is not a regular file (nor a folder of data files); "
                            "`file_name` must name a .json, .jsonl, .csv, .parquet or .arrow file, or a folder of them.")
        root, found = os.path.realpath(dataset_dir), os.path.realpath(attr.path)
        if os.path.commonpath([root, found]) != root and entry.get("allow_outside_media_dir") is not True:
            raise fail(f"`file_name` '{entry['file_name']}' is outside dataset_dir (symlinks followed); set "
                       "`allow_outside_media_dir: true` in the entry to read it.")
    elif "hf_hub_url" in entry:
        attr = DatasetAttr(name, "hf_hub", entry["hf_hub_url"])
    else:
        raise fail("needs `file_name` (or `hf_hub_url`).")
    attr.formatting = formatting
    attr.allow_outside_media_dir = entry.get("allow_outside_media_dir", False)
    attr.split = entry.get("split", "train")
    attr.subset = entry.get("subset")
    for key, value in entry.get("columns", {}).items():
        if key not in ("messages", "embeddings", "system"):
            raise DataError(f"Dataset '{name}': unknown column role '{key}' (use messages, embeddings, system).")
        setattr(attr, key, value)
    attr.named_columns = tuple(entry.get("columns", {}))
    for key, value in entry.get("tags", {}).items():
        if not hasattr(attr, key) or not key.endswith("_tag"):
            raise DataError(f"Dataset '{name}': unknown tag '{key}'.")
        setattr(attr, key, value)
    return attr


def resolve_columns(attr: DatasetAttr, column_names: list[str]) -> DatasetAttr:
    """LLaMA-Factory's ShareGPT column is `conversations`; data in the OpenAI layout calls it `messages`. When the
    registered column is absent and `messages` is there, read that one, unless the entry named its column itself: then
    that column must be there."""
    if attr.messages in column_names:
        return attr
    if "messages" in attr.named_columns:
        raise DataError(f"dataset '{attr.name}': `columns.messages` names '{attr.messages}', which the rows do not have "
                        f"(they have: {', '.join(sorted(column_names))}); name one of those.")
    if "messages" in column_names:
        return dataclasses.replace(attr, messages="messages")
    return attr


def write_rows(output_dir: str, name: str, rows: list[dict], entry: dict) -> str:
    """`<output_dir>/<name>.jsonl` and its entry in `<output_dir>/dataset_info.json` (other entries kept)."""
    path = os.path.join(output_dir, f"{name}.jsonl")
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))  # whole or not at all
    info_path = os.path.join(output_dir, "dataset_info.json")
    info = {}
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    info[name] = entry
    write_text(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path
