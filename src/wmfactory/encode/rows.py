"""The rows `wmfactory encode` writes: an input dataset's rows with every raw entry replaced by the path of its
embedding file, or, from a manifest, one row per `sequence`. Either way `wmfactory train` reads them as they are."""

import json
import os
from typing import Any, Callable

from ..data.registry import DATA_FILE_SUFFIXES, get_dataset_attrs
from ..extras.errors import DataError
from .items import Item, entry_item


def _reason(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8: byte 0x{err.object[err.start]:02x} at offset {err.start}"
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return str(err).split(":")[0]


def read_json_rows(path: str, name: str) -> list[Any]:
    """The rows of a .json (a list) or .jsonl file, read with `json` (raw entries mix strings and objects, which
    Arrow cannot hold in one column)."""
    with open(path, encoding="utf-8") as f:
        if path.lower().endswith(".jsonl"):
            rows = []
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except (ValueError, RecursionError) as err:  # a number of thousands of digits, too
                        raise DataError(f"dataset '{name}', file '{path}', line {number}: not valid JSON "
                                        f"({_reason(err)})") from None
            return rows
        try:
            rows = json.load(f)
        except (ValueError, RecursionError) as err:
            raise DataError(f"dataset '{name}', file '{path}': not valid JSON ({_reason(err)})") from None
    if not isinstance(rows, list):
        raise DataError(f"dataset '{name}', file '{path}': a .json dataset must hold a list of rows")
    return rows


def dataset_rows(name: str, dataset_dir: str, media_dir: str) -> tuple[list[dict], dict, list[Item], str]:
    """(rows, their dataset_info entry, the items of every entry in reading order, the embeddings column)."""
    attr = get_dataset_attrs([name], dataset_dir)[0]
    if attr.load_from != "file":
        raise DataError(f"dataset '{name}': `encode` reads local files (file_name), not `hf_hub_url`")
    files = ([os.path.join(attr.path, f) for f in sorted(os.listdir(attr.path))] if os.path.isdir(attr.path)
             else [attr.path])
    files = [f for f in files if os.path.splitext(f)[1].lower() in DATA_FILE_SUFFIXES]
    if not files or any(os.path.splitext(f)[1].lower() not in (".json", ".jsonl") for f in files):
        raise DataError(f"dataset '{name}': `encode` reads .json and .jsonl rows, found {files or 'no data file'}")
    rows = [row for path in files for row in read_json_rows(path, name)]
    with open(os.path.join(dataset_dir, "dataset_info.json"), encoding="utf-8") as f:
        entry = json.load(f)[name]
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"dataset '{name}', row {index}: a row must be a JSON object")
        cell = row.get(attr.embeddings)
        if cell is None:
            continue
        if not isinstance(cell, dict):
            raise DataError(f"dataset '{name}', row {index}: column '{attr.embeddings}' must map keys to lists")
        for key, entries in cell.items():
            where = f"dataset '{name}', row {index}, key '{key}'"
            if not isinstance(entries, list):
                raise DataError(f"{where}: expected a list of entries, got {type(entries).__name__}")
            items.extend(entry_item(entry_value, media_dir, where, attr.allow_outside_media_dir)
                         for entry_value in entries)
    if not items:
        raise DataError(f"dataset '{name}': no `{attr.embeddings}` entry to encode")
    return rows, entry, items, attr.embeddings


def replace_entries(rows: list[dict], column: str, items: list[Item], file_of: Callable[[Item], str]) -> list[dict]:
    """The rows with each raw entry (in the reading order of `dataset_rows`) replaced by its embedding file."""
    pending = iter(items)
    out = []
    for row in rows:
        cell = row.get(column)
        if isinstance(cell, dict):
            row = {**row, column: {key: [file_of(next(pending)) for _ in entries] for key, entries in cell.items()}}
        out.append(row)
    return out


def sequence_rows(items: list[Item], file_of: Callable[[Item], str]) -> list[dict]:
    """One row per `sequence` of a manifest, in order of first appearance: `<m1>` in the user turn, `<m2>` ... in
    the assistant turn (each vector after the first is a `next` target)."""
    sequences: dict[str, list[Item]] = {}
    for item in items:
        if item.sequence is not None:
            sequences.setdefault(item.sequence, []).append(item)
    rows = []
    for name, members in sequences.items():
        if len(members) < 2:
            raise DataError(f"{members[0].where()}: sequence '{name}' has one item; a row needs at least two")
        later = "".join(f"<m{i + 1}>" for i in range(1, len(members)))
        rows.append({"messages": [{"role": "user", "content": "<m1>"}, {"role": "assistant", "content": later}],
                     "embeddings": {f"m{i + 1}": [file_of(item)] for i, item in enumerate(members)},
                     "sequence": name})
    return rows


def dataset_entry(file_name: str, input_entry: dict, record: dict) -> dict:
    """The dataset_info.json entry of written rows: the input's columns and tags, and the encoder record."""
    entry = {"file_name": file_name, "formatting": "sharegpt"}
    for key in ("columns", "tags"):
        if key in input_entry:
            entry[key] = input_entry[key]
    entry["encoder"] = record
    return entry
