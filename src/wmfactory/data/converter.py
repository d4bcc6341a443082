"""ShareGPT rows -> one normalised form: a system prompt, alternating user/assistant turns, and the embeddings map."""

from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..extras.errors import row_error
from .registry import DatasetAttr

USER, ASSISTANT = "user", "assistant"


@dataclass
class Conversation:
    system: str
    turns: list[tuple[str, str]]  # (role, content), role in {user, assistant}, alternating, user first
    embeddings: dict[str, list[Any]]  # key -> one entry (file path) per placeholder occurrence


def convert_sharegpt(row: dict, attr: DatasetAttr, index: int) -> tuple[Optional[Conversation], Optional[str]]:
    """Convert one raw row. Returns (conversation, None), or (None, reason) for a row LLaMA-Factory would drop
    (bad role order); raises DataError for rows that cannot be read at all."""
    if attr.messages not in row:
        raise row_error(f"no column '{attr.messages}' holding the messages (the row has {sorted(row)}); set "
                        "`columns.messages` in dataset_info.json to the column that holds them", attr.name, index)
    messages = row[attr.messages]
    if not isinstance(messages, list) or not messages:
        raise row_error(f"column '{attr.messages}' must be a non-empty list of messages", attr.name, index)
    system = row.get(attr.system) if attr.system else None
    if messages and isinstance(messages[0], dict) and messages[0].get(attr.role_tag) == attr.system_tag:
        system = messages[0].get(attr.content_tag)
        messages = messages[1:]
    if system is not None and not isinstance(system, str):
        raise row_error(f"the system prompt must be a string, got {type(system).__name__}", attr.name, index)

    user_roles = (attr.user_tag, attr.observation_tag)
    assistant_roles = (attr.assistant_tag, attr.function_tag)
    turns = []
    for turn_index, message in enumerate(messages):
        if not isinstance(message, dict) or attr.role_tag not in message or attr.content_tag not in message:
            raise row_error(
                f"message {turn_index} needs the keys '{attr.role_tag}' and '{attr.content_tag}' (set `tags` in "
                "dataset_info.json if your data uses other names)", attr.name, index
            )
        role, content = message[attr.role_tag], message[attr.content_tag]
        expected = user_roles if turn_index % 2 == 0 else assistant_roles
        if role not in expected:
            return None, f"bad role order (message {turn_index} is '{role}', expected one of {list(expected)})"
        if not isinstance(content, str):
            raise row_error(f"message {turn_index} content must be a string", attr.name, index)
        turns.append((USER if role in user_roles else ASSISTANT, content))

    return Conversation(system or "", turns, _read_embeddings(row, attr, index)), None


def _read_embeddings(row: dict, attr: DatasetAttr, index: int) -> dict[str, list[Any]]:
    raw = row.get(attr.embeddings)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise row_error(f"column '{attr.embeddings}' must map keys to lists of files, got {type(raw).__name__}",
                        attr.name, index)
    embeddings = {}
    for key, files in raw.items():
        if files is None:  # Arrow fills keys that only other rows have with null
            continue
        if not isinstance(files, list):
            raise row_error(f"expected a list of files, got {type(files).__name__}", attr.name, index, key)
        embeddings[key] = files
    return embeddings


def embedding_files(entry: Any) -> Iterator[str]:
    """The file names of one raw `embeddings` cell (key -> list of files), as they stand in the row; entries of a
    malformed cell are skipped here (the converter reports them with the row)."""
    for files in (entry or {}).values() if isinstance(entry, dict) else ():
        for name in files or () if isinstance(files, list) else ():
            if isinstance(name, str):
                yield name
