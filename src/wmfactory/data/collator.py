"""Batches rows of different lengths holding different numbers of vectors."""

from dataclasses import dataclass
from typing import Any, Optional

import torch

from .encoder import IGNORE_INDEX


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
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_size = len(features)
        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        vectors, positions, is_target = [], [], []
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.as_tensor(f["labels"], dtype=torch.long)
            attention_mask[row, :n] = 1
            if len(f["embedding_positions"]):
                vectors.append(torch.as_tensor(f["embedding_vectors"], dtype=torch.float32))
                slot_positions = torch.as_tensor(f["embedding_positions"], dtype=torch.long)
                positions.append(torch.stack([torch.full_like(slot_positions, row), slot_positions], dim=1))
                is_target.append(torch.as_tensor(f["embedding_is_target"], dtype=torch.bool))
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "embedding_vectors": torch.cat(vectors) if vectors else torch.zeros((0, self.embedding_dim)),
            "embedding_positions": torch.cat(positions) if positions else torch.zeros((0, 2), dtype=torch.long),
            "embedding_is_target": torch.cat(is_target) if is_target else torch.zeros((0,), dtype=torch.bool),
        }
