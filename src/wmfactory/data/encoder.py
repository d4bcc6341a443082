"""Slot expansion, LM labels, target selection and truncation: the sequence rules of the README's
"Targets and losses", in one place.

A rendered conversation is a list of units: runs of text tokens and embedding groups (one group per placeholder
occurrence, n slots for a file of n vectors). Slots never carry LM labels; a slot of a target group is predicted
by the prediction head from the hidden state one position earlier."""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..extras.constants import IGNORE_INDEX
from .placeholders import split_text
from .streams import is_condition, stream_of
from .template import Chunks

NO_CUTOFF = 1 << 30  # a `cutoff_len` that never cuts (whole rows: `wmfactory check`, rows given from Python)
TargetRule = Literal["next", "assistant", "all"]
TARGET_RULES: tuple[TargetRule, ...] = ("next", "assistant", "all")


@dataclass
class EncodedRow:
    input_ids: list[int]  # [t]; slots hold the pad id, which is never looked up
    labels: list[int]  # [t]; IGNORE_INDEX on prompt tokens and on every slot
    embedding_positions: list[int] = field(default_factory=list)  # [v] position of each slot
    embedding_vectors: list[np.ndarray] = field(default_factory=list)  # [v] vectors of dimension d, slot order
    embedding_is_target: list[bool] = field(default_factory=list)  # [v]
    group_of_vector: list[int] = field(default_factory=list)  # [v] index of the group (placeholder occurrence)
    stream_of_vector: list[str] = field(default_factory=list)  # [v] stream of the vector (its key without digits)
    group_in_assistant: list[bool] = field(default_factory=list)  # per group kept: inside an assistant turn


def is_target_slot(earlier_in_stream: bool, in_assistant: bool, position: int, rule: TargetRule,
                   condition: bool = False) -> bool:
    """Whether the head must predict the vector at `position` of a group (placeholder occurrence). Groups of a
    condition stream never are. Otherwise `next`: every group after the first of its stream in the row (with one
    stream: every group but the first); `assistant`: groups in assistant turns; `all`: every group. A slot at
    position 0 is never a target: no hidden state precedes it."""
    if position == 0 or condition:
        return False
    if rule == "next":
        return earlier_in_stream
    if rule == "assistant":
        return in_assistant
    return True


def encode_chunks(
    chunks: Chunks,
    groups: list[np.ndarray],
    keys,
    tokenizer,
    cutoff_len: int,
    target_rule: TargetRule = "next",
    train_on_prompt: bool = False,
    condition_patterns: tuple[str, ...] = (),
) -> EncodedRow:
    """Turn rendered chunks into token ids, labels and slots.

    Args:
        chunks: `(text, trainable)` pieces from a template; placeholders appear in the text as `<KEY>`.
        groups: the vectors of each placeholder occurrence in reading order, each `[n, d]`.
        keys: the row's embedding keys (decides what `<KEY>` is a placeholder).
        cutoff_len: maximum length; text is cut at the end, and a group that does not fit whole is dropped along
            with everything after it.
        condition_patterns: the streams (names or shell patterns) whose groups are inputs only.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    row = EncodedRow(input_ids=[], labels=[])
    group_index = 0
    seen_streams: set[str] = set()
    for text, trainable in chunks:
        for piece in split_text(text, keys):
            room = cutoff_len - len(row.input_ids)
            if isinstance(piece, tuple):
                if group_index >= len(groups):
                    raise ValueError("the template rendered more placeholders than the conversation holds")
                vectors = groups[group_index]
                if len(vectors) > room:
                    return row  # a group is never cut in half
                row.group_in_assistant.append(trainable)
                stream = stream_of(piece[0])
                earlier, condition = stream in seen_streams, is_condition(stream, condition_patterns)
                seen_streams.add(stream)
                for vector in vectors:
                    position = len(row.input_ids)
                    row.input_ids.append(pad_id)
                    row.labels.append(IGNORE_INDEX)
                    row.embedding_positions.append(position)
                    row.embedding_vectors.append(vector)
                    row.embedding_is_target.append(
                        is_target_slot(earlier, trainable, position, target_rule, condition))
                    row.group_of_vector.append(group_index)
                    row.stream_of_vector.append(stream)
                group_index += 1
            else:
                ids = tokenizer(piece, add_special_tokens=False)["input_ids"][:room]
                row.input_ids.extend(ids)
                row.labels.extend(ids if (trainable or train_on_prompt) else [IGNORE_INDEX] * len(ids))
                if len(ids) == room:
                    return row
    if group_index != len(groups):
        raise ValueError(
            f"the chat template rendered {group_index} of {len(groups)} placeholders (it drops part of the "
            "conversation); choose another `template`"
        )
    return row
