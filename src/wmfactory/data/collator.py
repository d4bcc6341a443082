"""Batches rows of different lengths holding different numbers of vectors.

Training reads batches straight from Arrow: `ArrowBatches` hands the collator the rows of a batch as one
`pyarrow.Table`, and the collator pads and flattens it with vectorised NumPy (no Python object per token or per
vector). The collator also accepts a list of row dicts, as any Hugging Face collator does."""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..extras.constants import IGNORE_INDEX
from ..extras.errors import DataError

COLLATED_COLUMNS = ["input_ids", "labels", "embedding_positions", "embedding_vectors", "embedding_is_target",
                    "embedding_streams"]


class ArrowBatches(torch.utils.data.Dataset):
    """A preprocessed `datasets.Dataset` seen through the collated columns; a batch of indices is fetched with
    one Arrow `take` (memory-mapped, nothing else is read)."""

    def __init__(self, dataset):
        columns = [name for name in COLLATED_COLUMNS if name in dataset.column_names]
        self.dataset = dataset.select_columns(columns).with_format("arrow")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One row as a dict of lists, as any dataset gives it (samplers that look at lengths read this)."""
        return self.dataset[index : index + 1].to_pylist()[0]

    def __getitems__(self, indices: Sequence[int]) -> list[pa.Table]:
        """The batch the DataLoader asks for, as one table (the collator takes it whole)."""
        return [self.dataset[list(indices)]]


def collator_view(dataset) -> Optional[ArrowBatches]:
    return None if dataset is None else ArrowBatches(dataset)


def _lists(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list column -> (`[rows + 1]` offsets from 0, the concatenated values) without a Python object per item."""
    lists = column.combine_chunks()
    offsets = lists.offsets.to_numpy()
    values = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    return offsets - offsets[0], values


def _padded(column: pa.ChunkedArray, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column of integers -> (`[rows, longest]` int64 padded with `fill`, the `[rows, longest]` mask)."""
    offsets, values = _lists(column)
    lengths = np.diff(offsets)
    mask = np.arange(int(lengths.max(initial=0)))[None, :] < lengths[:, None]
    out = np.full(mask.shape, fill, dtype=np.int64)
    out[mask] = values.to_numpy(zero_copy_only=False)
    return out, mask


def lm_label_mask(labels: torch.Tensor) -> torch.Tensor:
    """`[b, t]` labels -> `[b, t - 1]`: which hidden states (positions 0..t-2) carry an LM target (the next token's
    label). The one definition the collator, the loss and the trainer's token count share."""
    return labels[:, 1:] != IGNORE_INDEX


def lm_label_index(labels: torch.Tensor) -> torch.Tensor:
    """`[b, t]` labels -> `[n]` long: the flat positions (row * t + p, in `[b * t]`) of the hidden states that carry
    an LM target, in row-major order; the target of position i is `labels.flatten()[i + 1]`. The collator computes
    it once per batch, so that the forward pass gathers with it instead of indexing with a mask (whose result has a
    shape that depends on the data, which `torch.compile` cannot trace)."""
    rows, columns = lm_label_mask(labels).nonzero(as_tuple=True)
    return rows * labels.shape[1] + columns


@dataclass
class WorldModelDataCollator:
    """Right-pads the text and flattens the vectors of the whole batch.

    Returns:
        input_ids, attention_mask, labels: `[b, t]`.
        embedding_vectors: `[v, d]`, every vector of the batch in row order; a vector of a narrower stream is
            padded with zeros to `embedding_dim`, the widest stream's dimension.
        embedding_positions: `[v, 2]`, (row, position) of each vector's slot.
        embedding_is_target: `[v]`, whether the head must predict the vector.
        embedding_streams: `[v]`, the index of each vector's stream in `streams`.
        embedding_target_index: `[v_target]`, the indices (into the vectors) of the targets, in order.
        lm_label_index: `[n]`, the flat positions (row * t + p) of the hidden states with an LM target
            (`lm_label_index`).
    Both indices let the forward pass gather without boolean masks, so that it has no data-dependent shape.
    """

    pad_token_id: int
    embedding_dim: int
    streams: Optional[Sequence[str]] = None  # the model's streams, in order (None: one stream)

    def __call__(self, features: list[dict[str, Any]] | list[pa.Table]) -> dict[str, torch.Tensor]:
        if len(features) == 1 and isinstance(features[0], pa.Table):
            table = features[0]
        else:
            table = pa.table({name: [f[name] for f in features] for name in COLLATED_COLUMNS if name in features[0]})
        input_ids, mask = _padded(table.column("input_ids"), self.pad_token_id)
        labels, _ = _padded(table.column("labels"), IGNORE_INDEX)
        attention_mask = mask.astype(np.int64)
        offsets, slots = _lists(table.column("embedding_positions"))
        rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        _, vectors = _lists(table.column("embedding_vectors"))  # one list of d_i floats per vector
        _, targets = _lists(table.column("embedding_is_target"))
        is_target = targets.to_numpy(zero_copy_only=False).astype(bool)
        labels = torch.from_numpy(labels)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": labels,
            "embedding_vectors": torch.from_numpy(self._vectors(vectors)),
            "embedding_positions": torch.from_numpy(
                np.stack([rows, slots.to_numpy(zero_copy_only=False).astype(np.int64)], axis=1).reshape(-1, 2)
            ),
            "embedding_is_target": torch.from_numpy(is_target),
            "embedding_streams": torch.from_numpy(self._streams(table)),
            "embedding_target_index": torch.from_numpy(np.flatnonzero(is_target).astype(np.int64)),
            "lm_label_index": lm_label_index(labels),
        }

    def _vectors(self, vectors: pa.Array) -> np.ndarray:
        """One list of floats per vector -> `[v, embedding_dim]` float32, narrower vectors zero-padded."""
        if not len(vectors):
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        floats = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        lengths = np.diff(vectors.offsets.to_numpy())
        if (lengths == self.embedding_dim).all():
            return floats.reshape(-1, self.embedding_dim)
        out = np.zeros((len(lengths), self.embedding_dim), dtype=np.float32)
        out[np.arange(self.embedding_dim)[None, :] < lengths[:, None]] = floats
        return out

    def _streams(self, table: pa.Table) -> np.ndarray:
        """`[v]` int64: each vector's stream as an index into `streams` (0 with one stream)."""
        if "embedding_streams" not in table.column_names or not self.streams or len(self.streams) == 1:
            return np.zeros(int(_lists(table.column("embedding_positions"))[0][-1]), dtype=np.int64)
        _, names = _lists(table.column("embedding_streams"))
        index = pc.index_in(names, value_set=pa.array(list(self.streams)))
        if index.null_count:
            unknown = sorted(set(pc.filter(names, pc.is_null(index)).to_pylist()))
            raise DataError(f"vectors of stream(s) {unknown}, which this model does not have (its streams: "
                            f"{list(self.streams)}).")
        return index.to_numpy(zero_copy_only=False).astype(np.int64)
