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
    embedding_dim: Optional[int] = None
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
                self.train_on_prompt,
            )
        except ValueError as err:
            raise row_error(str(err), self.attr.name, index) from None
        dim = groups[0].shape[1] if groups else 0
        features = {
            "input_ids": encoded.input_ids,
            "labels": encoded.labels,
            "embedding_positions": encoded.embedding_positions,
            "embedding_vectors": np.stack(encoded.embedding_vectors) if encoded.embedding_vectors else
            np.zeros((0, dim), dtype=np.float32),
            "embedding_is_target": encoded.embedding_is_target,
            "embedding_groups": encoded.group_of_vector,
            "group_keys": [p.key for p in placeholders],
            "group_occurrences": [p.occurrence for p in placeholders],
            "group_in_assistant": encoded.group_in_assistant,
            "embedding_dim": dim,
            "row_index": index,
            "dataset_name": self.attr.name,
        }
        if self.trace:
            self._trace(index, placeholders, conversation.embeddings, groups, encoded)
        return features, None

    def _load(self, entry: Any, index: int, key: str) -> np.ndarray:
        try:
            return load_embedding(entry, self.media_dir)
        except DataError as err:
            file = entry if isinstance(entry, str) else None
            raise row_error(str(err), self.attr.name, index, key, file) from None

    def _check_dims(self, groups, placeholders, embeddings, index: int) -> None:
        expected = self.embedding_dim if self.embedding_dim is not None else (groups[0].shape[1] if groups else None)
        for vectors, p in zip(groups, placeholders):
            if vectors.shape[1] != expected:
                file = embeddings[p.key][p.occurrence]
                if self.embedding_dim is not None:
                    reason = f"`embedding_dim` is {self.embedding_dim} but the vectors have dimension {vectors.shape[1]}"
                else:
                    reason = f"dimension {vectors.shape[1]} differs from the row's first vectors ({expected})"
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
