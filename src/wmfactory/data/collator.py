"""Batches rows of different lengths holding different numbers of vectors."""

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from .encoder import IGNORE_INDEX


COLLATED_COLUMNS = ["input_ids", "labels", "embedding_positions", "embedding_vectors", "embedding_is_target"]


def collator_view(dataset):
    """Only the columns the collator reads (fetching the others would cost every step)."""
    return None if dataset is None else dataset.select_columns(COLLATED_COLUMNS)


@dataclass
class WorldModelDataCollator:
    """Right-pads the text and flattens the vectors of the whole batch.

    Returns:
        input_ids, attention_mask, labels: `[b, t]`.
        embedding_vectors: `[v, d]`, every vector of the batch in row order.
        embedding_positions: `[v, 2]`, (row, position) of each vector's slot.
        embedding_is_target: `[v]`, whether the head must predict the vector.
    """

    pad_token_id: int
    embedding_dim: int
    pad_to_multiple_of: Optional[int] = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        length = max(lengths)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_size = len(features)
        # built in NumPy and handed to torch without a copy: this runs once per step on the training process
        input_ids = np.full((batch_size, length), self.pad_token_id, dtype=np.int64)
        labels = np.full((batch_size, length), IGNORE_INDEX, dtype=np.int64)
        attention_mask = np.zeros((batch_size, length), dtype=np.int64)
        vectors, rows, positions, is_target = [], [], [], []
        for row, (f, n) in enumerate(zip(features, lengths)):
            input_ids[row, :n] = f["input_ids"]
            labels[row, :n] = f["labels"]
            attention_mask[row, :n] = 1
            if len(f["embedding_positions"]):
                vectors.extend(f["embedding_vectors"])
                positions.extend(f["embedding_positions"])
                rows.extend([row] * len(f["embedding_positions"]))
                is_target.extend(f["embedding_is_target"])
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
            "embedding_vectors": torch.from_numpy(np.asarray(vectors, dtype=np.float32).reshape(-1, self.embedding_dim)),
            "embedding_positions": torch.from_numpy(np.asarray([rows, positions], dtype=np.int64).T.reshape(-1, 2)),
            "embedding_is_target": torch.from_numpy(np.asarray(is_target, dtype=bool)),
        }
