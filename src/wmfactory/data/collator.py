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
        self.with_row_ids = False  # `missing_refills`: batches say which rows they hold (`embedding_row_ids`)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One row as a dict of lists, as any dataset gives it (samplers that look at lengths read this)."""
        return self.dataset[index : index + 1].to_pylist()[0]

    def __getitems__(self, indices: Sequence[int]) -> list[pa.Table]:
        """The batch the DataLoader asks for, as one table (the collator takes it whole)."""
        table = self.dataset[list(indices)]
        if self.with_row_ids:
            table = table.append_column("row_id", pa.array(list(indices), pa.int64()))
        return [table]


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


def _pack(input_ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray, positions: np.ndarray, capacity: int,
          pad_token_id: int):
    """Right-padded rows `[b, t]` -> packed sequences `[s, L]` (first fit, rows in their order; a row longer than
    `capacity` gets a sequence of its own). Returns (input_ids, labels, embedding_positions `[v, 2]` (sequence,
    position), and `position_ids` `[s, L]` restarting at 0 for each row and for the padding, `embedding_rows` `[v]`
    (each vector's row, for "the previous vector of its row")). The first token of each row loses its LM label:
    unpacked, nothing predicts it; packed, the previous row's last position would."""
    bins: list[list[int]] = []
    room: list[int] = []
    for row, length in enumerate(lengths.tolist()):
        place = next((i for i, free in enumerate(room) if free >= length), None)
        if place is None:
            bins.append([]), room.append(max(capacity, length))
            place = len(bins) - 1
        bins[place].append(row)
        room[place] -= length
    width = max(sum(int(lengths[r]) for r in rows) for rows in bins)
    ids = np.full((len(bins), width), pad_token_id, dtype=np.int64)
    out_labels = np.full((len(bins), width), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros((len(bins), width), dtype=np.int64)
    sequence, offset = np.zeros(len(lengths), dtype=np.int64), np.zeros(len(lengths), dtype=np.int64)
    for s, rows in enumerate(bins):
        start = 0
        for r in rows:
            n = int(lengths[r])
            ids[s, start:start + n] = input_ids[r, :n]
            out_labels[s, start:start + n] = labels[r, :n]
            out_labels[s, start] = IGNORE_INDEX
            position_ids[s, start:start + n] = np.arange(n)
            sequence[r], offset[r] = s, start
            start += n
        position_ids[s, start:] = np.arange(width - start)  # the padding: a segment of its own
    rows = positions[:, 0]
    packed_positions = np.stack([sequence[rows], offset[rows] + positions[:, 1]], axis=1)
    return ids, out_labels, packed_positions, {"position_ids": position_ids, "embedding_rows": rows.copy()}


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
    # `packing`: the rows of a batch packed into as few sequences of at most this many positions as first-fit
    # allows, each row keeping its own positions (`position_ids` restart at 0) and attending only to itself
    pack_length: Optional[int] = None

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
        positions = np.stack([rows, slots.to_numpy(zero_copy_only=False).astype(np.int64)], axis=1).reshape(-1, 2)
        packed = {}
        if self.pack_length:
            input_ids, labels, positions, packed = _pack(input_ids, labels, mask.sum(1), positions, self.pack_length,
                                                         self.pad_token_id)
        labels = torch.from_numpy(labels)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": labels,
            "embedding_vectors": torch.from_numpy(self._vectors(vectors)),
            "embedding_positions": torch.from_numpy(positions),
            "embedding_is_target": torch.from_numpy(is_target),
            "embedding_streams": torch.from_numpy(self._streams(table)),
            "embedding_target_index": torch.from_numpy(np.flatnonzero(is_target).astype(np.int64)),
            "lm_label_index": lm_label_index(labels),
        }
        if "row_id" in table.column_names:  # the dataset row of each vector (`ArrowBatches.with_row_ids`)
            batch["embedding_row_ids"] = torch.from_numpy(table.column("row_id").to_numpy()[rows])
        if packed:  # no attention mask: the decoder builds one that keeps each row to itself from position_ids
            del batch["attention_mask"]
            batch.update({name: torch.from_numpy(value) for name, value in packed.items()})
        return batch

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
