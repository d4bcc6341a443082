"""The raw items to encode, from a manifest (JSONL) or from ShareGPT rows whose `embeddings` entries are raw files or
raw text. Each item has a stable id (its embedding file is `<id>.<format>`), one modality, and the place it was named,
for error messages. Files are checked to exist here, before any encoder is loaded."""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..data.embeddings import EMBEDDING_READERS, resolve_path
from ..extras.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
TEXT_SUFFIXES = {".txt", ".md"}
MODALITY_KEYS = ("text", "image", "audio", "path")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Item:
    id: str
    modality: str  # text | image | audio
    source: str  # where it was named: "manifest 'm.jsonl', line 3" or "dataset 'story', row 2, key 'm1'"
    text: Optional[str] = None  # raw text (modality text, given inline)
    path: Optional[str] = None  # the raw file, resolved
    given_path: Optional[str] = None  # the file as the input names it
    sequence: Optional[str] = field(default=None, compare=False)

    def where(self) -> str:
        """`dataset 'story', row 2, key 'm1', file 'img/a.png'` for error messages."""
        return self.source + (f", file '{self.given_path}'" if self.given_path else "")

    def describe(self) -> dict[str, Any]:
        """The item's line in items.jsonl (without its embedding file)."""
        record: dict[str, Any] = {"id": self.id, "modality": self.modality}
        if self.text is not None:
            record["text"] = self.text
        if self.given_path is not None:
            record["path"] = self.given_path
        return record


def modality_of_file(name: str, where: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    for modality, suffixes in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES), ("text", TEXT_SUFFIXES)):
        if suffix in suffixes:
            return modality
    if suffix in EMBEDDING_READERS:
        raise DataError(f"{where}, file '{name}': already an embedding file; `encode` reads raw text, images and "
                        "audio")
    raise DataError(f"{where}, file '{name}': unknown raw file type '{suffix}' (images: "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}; audio: {', '.join(sorted(AUDIO_SUFFIXES))}; text: "
                    f"{', '.join(sorted(TEXT_SUFFIXES))}); say `image`, `audio` or `text` for other files")


def file_item(item_id: str, modality: str, name: Any, media_dir: str, where: str,
              sequence: Optional[str] = None, allow_outside: bool = False) -> Item:
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}: a {modality} entry must be a file path (a non-empty string)")
    try:
        path = resolve_path(name, media_dir, allow_outside)
    except DataError as err:
        raise DataError(f"{where}, file '{name}': {err}") from None
    if not os.path.isfile(path):
        raise DataError(f"{where}, file '{name}': file not found (relative paths start at '{media_dir}')")
    return Item(item_id, modality, where, path=path, given_path=name, sequence=sequence)


def text_item(item_id: str, text: Any, where: str, sequence: Optional[str] = None) -> Item:
    if not isinstance(text, str):
        raise DataError(f"{where}: `text` must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{where}: empty text")
    return Item(item_id, "text", where, text=text, sequence=sequence)


def content_id(modality: str, value: str) -> str:
    """A stable id for an entry of a row: the same text (or file path) anywhere gives the same id, and one file."""
    digest = hashlib.sha256(f"{modality}\0{value}".encode("utf-8")).hexdigest()[:16]
    if modality == "text":
        return f"text-{digest}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(value))[0])[:40].strip("._-")
    return f"{stem or modality}-{digest}"


def entry_item(entry: Any, media_dir: str, where: str, allow_outside: bool = False) -> Item:
    """One entry of a row's `embeddings` list: a path (modality from its suffix) or {"text"|"image"|"audio": ...}."""
    if isinstance(entry, str):
        modality = modality_of_file(entry, where)
        return file_item(content_id("file", entry), modality, entry, media_dir, where, allow_outside=allow_outside)
    if isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in ("text", "image", "audio"):
        modality, value = next(iter(entry.items()))
        if modality == "text":
            return text_item(content_id("text", value if isinstance(value, str) else ""), value, where)
        return file_item(content_id("file", value if isinstance(value, str) else ""), modality, value, media_dir,
                         where, allow_outside=allow_outside)
    raise DataError(f"{where}: an entry must be a raw file path or one of {{\"text\": ...}}, {{\"image\": path}}, "
                    f"{{\"audio\": path}}; got {json.dumps(entry)[:60]}")


def manifest_items(path: str, media_dir: Optional[str] = None) -> list[Item]:
    """One item per non-empty line: `{"id", "text"|"image"|"audio"|"path": ..., "sequence"?}`."""
    media_dir = media_dir or os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise DataError(f"manifest '{path}' not found")
    items, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"manifest '{name}', line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg})") from None
            item = _manifest_item(record, media_dir, where)
            if item.id in seen:
                raise DataError(f"{where}: id '{item.id}' already used on line {seen[item.id]}")
            seen[item.id] = number
            items.append(item)
    if not items:
        raise DataError(f"manifest '{path}' holds no items")
    return items


def _manifest_item(record: Any, media_dir: str, where: str) -> Item:
    if not isinstance(record, dict):
        raise DataError(f"{where}: a line must be a JSON object with `id` and one of text, image, audio, path")
    item_id = record.get("id")
    if not isinstance(item_id, str) or not ID_PATTERN.match(item_id):
        raise DataError(f"{where}: `id` must be a string of letters, digits, '.', '_' or '-' (at most 128, not "
                        f"starting with '.', '_' or '-'), got {json.dumps(item_id)[:40]}")
    where = f"{where}, id '{item_id}'"
    given = [key for key in MODALITY_KEYS if key in record]
    if len(given) != 1:
        raise DataError(f"{where}: needs exactly one of text, image, audio, path (has {given or 'none'})")
    sequence = record.get("sequence")
    if sequence is not None and not isinstance(sequence, (str, int)):
        raise DataError(f"{where}: `sequence` must be a string or an integer")
    sequence = None if sequence is None else str(sequence)
    key = given[0]
    if key == "text":
        return text_item(item_id, record["text"], where, sequence)
    value = record[key]
    if key == "path":
        if not isinstance(value, str):
            raise DataError(f"{where}: `path` must be a file path (a string)")
        key = modality_of_file(value, where)
    return file_item(item_id, key, value, media_dir, where, sequence)


def unique_items(items: list[Item]) -> list[Item]:
    """Each id once, in order of first appearance; one id naming two different things is an error."""
    found: dict[str, Item] = {}
    for item in items:
        other = found.setdefault(item.id, item)
        if (other.modality, other.text, other.path) != (item.modality, item.text, item.path):
            raise DataError(f"{item.where()}: id '{item.id}' also names a different item at {other.where()}")
    return list(found.values())
