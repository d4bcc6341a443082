"""The placeholder rule, in one place: `<KEY>` in a message refers to `embeddings[KEY]`, and its i-th occurrence in
reading order takes the i-th entry of that list."""

import re
from dataclasses import dataclass

from ..extras.errors import row_error

PLACEHOLDER = re.compile(r"<([A-Za-z0-9_]+)>")
CONVENTIONAL_KEY = re.compile(r"m\d+")


@dataclass(frozen=True)
class Placeholder:
    key: str
    occurrence: int  # i-th occurrence of this key in reading order
    turn: int  # index of the turn that holds it


def is_placeholder(key: str, keys) -> bool:
    """`<KEY>` is a placeholder when KEY is an embeddings key of the row, or has the conventional form m<digits>."""
    return key in keys or CONVENTIONAL_KEY.fullmatch(key) is not None


def split_text(text: str, keys) -> list[str | tuple[str]]:
    """Split text into plain pieces and placeholders: `"a<m1>b"` -> `["a", ("m1",), "b"]` (empty pieces dropped)."""
    pieces: list[str | tuple[str]] = []
    position = 0
    for match in PLACEHOLDER.finditer(text):
        if not is_placeholder(match.group(1), keys):
            continue
        if match.start() > position:
            pieces.append(text[position:match.start()])
        pieces.append((match.group(1),))
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def map_placeholders(turn_texts: list[str], embeddings: dict[str, list], dataset: str, row: int) -> list[Placeholder]:
    """All placeholders of a row in reading order; checks that every count matches its list of files."""
    found: list[Placeholder] = []
    counts: dict[str, int] = {}
    for turn, text in enumerate(turn_texts):
        for piece in split_text(text, embeddings):
            if isinstance(piece, tuple):
                key = piece[0]
                found.append(Placeholder(key, counts.get(key, 0), turn))
                counts[key] = counts.get(key, 0) + 1
    for key, count in counts.items():
        if key not in embeddings:
            raise row_error(f"placeholder <{key}> has no entry in `embeddings`", dataset, row, key)
        if count != len(embeddings[key]):
            raise row_error(f"<{key}> occurs {count} time(s) but `embeddings` lists {len(embeddings[key])} file(s)",
                            dataset, row, key)
    for key in embeddings:
        if key not in counts:
            raise row_error(f"`embeddings` entry is never referenced by <{key}>", dataset, row, key)
    return found
