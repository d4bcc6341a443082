"""One raw dataset row -> model features: convert, map placeholders to files, read the vectors, render, encode."""

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..extras.errors import DataError, row_error
from ..extras.logging import get_logger
from .converter import convert_sharegpt
from .embeddings import load_embedding
from .encoder import TargetRule, encode_chunks
from .placeholders import map_placeholders
from .registry import DatasetAttr
from .streams import DimSpec, requested_dim, stream_of

logger = get_logger(__name__)


@dataclass
class RowProcessor:
    attr: DatasetAttr
    template: Any
    tokenizer: Any
    media_dir: str
    cutoff_len: int
    target_rule: TargetRule
    train_on_prompt: bool = False
    embedding_dim: DimSpec = None  # one dimension for every stream, a mapping per stream, or None (inferred)
    condition_patterns: tuple[str, ...] = ()  # streams whose groups are inputs only
    missing_values: str = "refuse"  # NaN entries: refused, or (`mask`) kept as missing values
    trace: bool = False  # log keys, files, shapes, slots and targets (TRANSFORMERS_VERBOSITY=debug)
    # size and modification time of every embedding file: part of the preprocessing cache's fingerprint, so that
    # editing a file invalidates the cache
    files_signature: str = ""

    def __call__(self, row: dict, index: int) -> tuple[Optional[dict], Optional[str]]:
        """Returns (features, None), or (None, reason) for a row dropped the way LLaMA-Factory drops it."""
        conversation, reason = convert_sharegpt(row, self.attr, index)
        if conversation is None:
            return None, reason
        texts = [conversation.system] + [content for _, content in conversation.turns]
        placeholders = map_placeholders(texts, conversation.embeddings, self.attr.name, index)
        groups = [self._load(conversation.embeddings[p.key][p.occurrence], index, p.key) for p in placeholders]
        self._check_dims(groups, placeholders, conversation.embeddings, index)

        chunks = self.template.render(conversation.system, conversation.turns, self.tokenizer)
        try:
            encoded = encode_chunks(
                chunks, groups, conversation.embeddings, self.tokenizer, self.cutoff_len, self.target_rule,
                self.train_on_prompt, self.condition_patterns,
            )
        except ValueError as err:
            raise row_error(str(err), self.attr.name, index) from None
        features = {
            "input_ids": encoded.input_ids,
            "labels": encoded.labels,
            "embedding_positions": encoded.embedding_positions,
            "embedding_vectors": _vectors(encoded.embedding_vectors, groups),
            "embedding_is_target": encoded.embedding_is_target,
            "embedding_groups": encoded.group_of_vector,
            "embedding_streams": encoded.stream_of_vector,
            "group_keys": [p.key for p in placeholders],
            "group_occurrences": [p.occurrence for p in placeholders],
            "group_in_assistant": encoded.group_in_assistant,
            "group_dims": [int(vectors.shape[1]) for vectors in groups],
            "row_index": index,
            "dataset_name": self.attr.name,
        }
        if self.trace:
            self._trace(index, placeholders, conversation.embeddings, groups, encoded)
        return features, None

    def _load(self, entry: Any, index: int, key: str) -> np.ndarray:
        try:
            return load_embedding(entry, self.media_dir, self.attr.allow_outside_media_dir, self.missing_values)
        except DataError as err:
            file = entry if isinstance(entry, str) else None
            raise row_error(str(err), self.attr.name, index, key, file) from None

    def _check_dims(self, groups, placeholders, embeddings, index: int) -> None:
        """Every vector of a stream has the stream's dimension: the one `embedding_dim` asks, else the dimension of
        the stream's first vectors in the row."""
        first: dict[str, int] = {}
        for vectors, p in zip(groups, placeholders):
            stream = stream_of(p.key)
            wanted = requested_dim(self.embedding_dim, stream)
            expected = wanted if wanted is not None else first.setdefault(stream, vectors.shape[1])
            if vectors.shape[1] != expected:
                file = embeddings[p.key][p.occurrence]
                if wanted is not None:
                    reason = (f"`embedding_dim` is {wanted} for stream '{stream}' but the vectors have dimension "
                              f"{vectors.shape[1]}")
                else:
                    reason = (f"dimension {vectors.shape[1]} differs from the row's first vectors of stream "
                              f"'{stream}' ({expected})")
                raise row_error(reason, self.attr.name, index, p.key, file if isinstance(file, str) else None)

    def _trace(self, index, placeholders, embeddings, groups, encoded) -> None:
        logger.debug(f"[{self.attr.name} row {index}] keys: {sorted(embeddings)}; {len(encoded.input_ids)} positions")
        for p, vectors in zip(placeholders, groups):
            entry = embeddings[p.key][p.occurrence]
            logger.debug(f"  <{p.key}> #{p.occurrence}: {entry if isinstance(entry, str) else 'inline'} "
                         f"shape {list(vectors.shape)}")
        for position, group, target in zip(encoded.embedding_positions, encoded.group_of_vector,
                                           encoded.embedding_is_target):
            key = placeholders[group].key
            logger.debug(f"  slot at position {position}: <{key}> group {group}, target={target}")
        trained = [label for label in encoded.labels if label >= 0]
        logger.debug(f"  LM-labelled text: {self.tokenizer.decode(trained)!r}")


def _vectors(vectors: list[np.ndarray], groups: list[np.ndarray]):
    """The row's vectors in slot order: `[v, d]` when every stream has the same dimension, else a list of `[d_i]`."""
    if len({g.shape[1] for g in groups}) > 1:
        return [np.asarray(v, dtype=np.float32) for v in vectors]
    if vectors:
        return np.stack(vectors)
    return np.zeros((0, groups[0].shape[1] if groups else 0), dtype=np.float32)
