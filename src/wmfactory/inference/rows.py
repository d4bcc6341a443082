"""A row's features as the inference engine reads them: its vectors, streams and groups as tensors on the model's
device (`RowTensors`), the frame inputs that the engine extends step by step, what a prediction returns
(`GroupPrediction`), and how a row is cut for a context (`context_features`, `rollout_windows`)."""

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch

from .decoder import length_mask, right_padded


@dataclass
class GroupPrediction:
    group: int  # placeholder occurrence in reading order
    key: str
    occurrence: int
    vector_indices: list[int]  # indices into the row's vector stream
    predicted: np.ndarray  # [n, d]
    target: np.ndarray  # [n, d]
    horizon: Optional[int] = None  # generated groups: 1 for the first group after the context
    samples: Optional[np.ndarray] = None  # [S, n, d] draws from the head's distribution, when asked for
    stream: str = "m"  # the key without its trailing digits


def vector_stream(features: dict[str, Any], width: Optional[int] = None) -> np.ndarray:
    """The row's vectors in reading order, `[v, d]` float32, whatever nesting the dataset returned them in; vectors
    of streams of different dimensions are zero-padded to `width` (default: the widest)."""
    vectors = features["embedding_vectors"]
    count = len(features["embedding_groups"])
    try:
        dense = np.asarray(vectors, dtype=np.float32).reshape(count, -1)
        if width is None or dense.shape[1] == width or count == 0:
            return dense
    except ValueError:  # vectors of different lengths
        pass
    rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
    out = np.zeros((count, width or max(len(r) for r in rows)), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def stream_sequence(features: dict[str, Any]) -> list[str]:
    """The stream of each vector of the row, in reading order."""
    if "embedding_streams" in features:
        return list(features["embedding_streams"])
    from ..data.streams import stream_of

    return [stream_of(features["group_keys"][g]) for g in features["embedding_groups"]]


@dataclass
class Layout:
    """What every row of a batch reads from the model, read once (a config attribute costs microseconds)."""

    device: torch.device
    width: int  # the widest stream's dimension
    dims: dict[str, int]

    @classmethod
    def of(cls, model) -> "Layout":
        cfg = model.config
        return cls(model.language_model.device, cfg.embedding_dim, cfg.stream_dims)


class RowTensors:
    """Tensors of one row on the model's device: ids `[t]`, positions `[v]`, vectors `[v, W]` (zero-padded to the
    widest stream), groups `[v]`, streams `[v]`: `stream_names`, the model's stream of each vector
    (`config.model_stream`; `row_streams`: the row's own, its keys without their digits), and their indices into
    the model's streams."""

    def __init__(self, model, features: dict[str, Any], layout: Optional[Layout] = None):
        layout = layout or Layout.of(model)
        device = layout.device
        self.model = model
        self.features = features
        self.input_ids = torch.as_tensor(features["input_ids"], dtype=torch.long, device=device)
        self.positions = torch.as_tensor(features["embedding_positions"], dtype=torch.long, device=device)
        self.vectors = torch.as_tensor(vector_stream(features, layout.width), device=device)
        self.fed = self.vectors  # the vectors as the model reads them: with their gaps filled (`fill_row_gaps`)
        self._targets: Optional[np.ndarray] = None
        self.groups = list(features["embedding_groups"])
        self.is_target = list(features["embedding_is_target"])
        self.row_streams = stream_sequence(features)
        to_model = {name: model.config.model_stream(name) for name in set(self.row_streams)}
        self.stream_names = [to_model[name] for name in self.row_streams]
        self.streams = model.stream_names(self.row_streams).to(device)
        self.dims = [layout.dims[name] for name in self.stream_names]
        self.group_indices: dict[int, list[int]] = {}  # group -> indices of its vectors
        for i, group in enumerate(self.groups):
            self.group_indices.setdefault(group, []).append(i)

    def stream_of_group(self, group: int) -> str:
        return self.stream_names[self.groups.index(group)]

    def group_prediction(self, group: int, predicted: torch.Tensor | np.ndarray, horizon: Optional[int] = None,
                         samples: Optional[torch.Tensor] = None):
        indices = self.group_indices[group]
        d = self.dims[indices[0]]
        if self._targets is None:  # the row's vectors as an array, once
            self._targets = self.vectors.float().cpu().numpy()
        return GroupPrediction(
            group=group,
            key=self.features["group_keys"][group],
            occurrence=self.features["group_occurrences"][group],
            vector_indices=indices,
            predicted=predicted if isinstance(predicted, np.ndarray) else predicted.float().cpu().numpy(),
            target=self._targets[indices, :d],
            horizon=horizon,
            samples=None if samples is None else samples.float().cpu().numpy(),
            stream=self.row_streams[indices[0]],
        )


def batch_slots(rows: list[RowTensors]) -> torch.Tensor:
    """The slot of every vector of the rows as one batch `[v, 2]`: (row in the batch, position)."""
    return torch.cat([torch.stack([torch.full_like(row.positions, b), row.positions], dim=1)
                      for b, row in enumerate(rows)])


@contextlib.contextmanager
def fills_kept(model):
    """Inside, `fill_row_gaps` solves each distinct history once and reuses it (calibration rolls out the same rows at
    many temperatures). The model's weights must not change inside."""
    model.__dict__["_kept_fills"] = {}
    try:
        yield
    finally:
        model.__dict__.pop("_kept_fills", None)


def fill_row_gaps(model, rows: list[RowTensors], fillable: Optional[list[list[bool]]] = None,
                  ends: Optional[list[int]] = None) -> None:
    """`missing_values: mask`: each row's `fed` becomes its vectors with their gaps filled by what the model finds
    most likely given the row (`WorldModel.fill_gaps`; its loss read on each row's `fillable` vectors, default its
    targets), the rows right-padded into one batch. `ends`: per row, the position where what is given ends (only the
    vectors before it are solved for, from the text and vectors before it; default the whole row). `vectors` stay
    as they are: they are what is scored."""
    if model.config.missing_values != "mask" or model.config.missing_fill_steps <= 0:
        return
    fillable = fillable or [row.is_target for row in rows]
    kept = model.__dict__.get("_kept_fills")
    todo, keys = [], []
    for i, row in enumerate(rows):
        end = len(row.input_ids) if ends is None else ends[i]
        n = int((row.positions < end).sum())
        if not bool(torch.isnan(row.vectors[:n]).any()):
            continue
        key = None
        if kept is not None:
            key = (row.input_ids[:end].cpu().numpy().tobytes(), row.vectors[:n].cpu().numpy().tobytes(),
                   tuple(fillable[i][:n]))
            if key in kept:
                row.fed = torch.cat([kept[key], row.vectors[n:]])
                continue
        todo.append((row, end, n, fillable[i][:n]))
        keys.append(key)
    if not todo:
        return
    ids, lengths = right_padded([row.input_ids[:end] for row, end, _, _ in todo])
    slots = torch.cat([torch.stack([torch.full_like(row.positions[:n], b), row.positions[:n]], dim=1)
                       for b, (row, _, n, _) in enumerate(todo)])
    flags = torch.tensor([flag for *_, flags in todo for flag in flags], dtype=torch.bool, device=ids.device)
    filled = model.fill_gaps(ids, torch.cat([row.vectors[:n] for row, _, n, _ in todo]), slots, flags,
                             torch.cat([row.streams[:n] for row, _, n, _ in todo]),
                             attention_mask=None if len(todo) == 1 else length_mask(lengths, ids.shape[1]))
    start = 0
    for (row, _, n, _), key in zip(todo, keys):
        part = row.vectors[:n] if filled is None else filled[start: start + n]
        row.fed = torch.cat([part, row.vectors[n:]])
        if key is not None:
            kept[key] = part
        start += n


@dataclass
class Sampling:
    """Draw `num_samples` trajectories from the head's distribution, with `temperature` scaling its spread (None: the
    model's calibrated temperatures: `config.temperature_at` each horizon); `seed` makes the draws reproducible."""

    num_samples: int
    temperature: Optional[float] = None
    seed: Optional[int] = None

    def generator(self, device) -> Optional[torch.Generator]:
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


def padded_history(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """`[S, n, d]` (n <= k vectors, most recent first) -> `[S, k, d]`, zeros after the n."""
    out = vectors.new_zeros((vectors.shape[0], k, vectors.shape[-1]))
    out[:, : vectors.shape[1]] = vectors
    return out


def with_conditions(history: torch.Tensor, conditions: list[torch.Tensor], k: int) -> torch.Tensor:
    """A ridge frame's history `[S, k, d]` with the last k vectors of each condition stream (`[S, n_c, d_c]`, most
    recent first) in the last columns, as `WorldModel.frame_inputs` lays them out: `[S, k, d + sum d_c]`."""
    return torch.cat([history.float()] + [padded_history(c.float(), k) for c in conditions], dim=-1)


def row_batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in lists of `size` (the last may be shorter). A `datasets.Dataset` is read a batch of columns at a time
    (one Arrow decode per batch, not one per row; the same values)."""
    if hasattr(rows, "column_names") and hasattr(rows, "iter"):  # a datasets.Dataset (not imported here)
        for batch in rows.iter(batch_size=max(1, size)):
            columns = list(batch)
            yield [{name: batch[name][i] for name in columns} for i in range(len(batch[columns[0]]))]
        return
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, max(1, size))):
        yield chunk


def context_features(features: dict[str, Any], context_groups: int) -> dict[str, Any]:
    """The row up to its group `context_groups`: the first `context_groups` groups and the text before the next
    one (the whole row when it has no more groups)."""
    groups = list(features["embedding_groups"])
    first = next((i for i, g in enumerate(groups) if g >= context_groups), None)
    if first is None:
        return features
    cut = features["embedding_positions"][first]
    out = dict(features)
    for key in ("input_ids", "labels"):
        out[key] = list(features[key])[:cut]
    for key in ("embedding_positions", "embedding_is_target", "embedding_groups", "embedding_streams"):
        if key in features:
            out[key] = list(features[key])[:first]
    out["embedding_vectors"] = list(features["embedding_vectors"])[:first]
    for key in ("group_keys", "group_occurrences", "group_in_assistant", "group_dims"):
        if key in features:
            out[key] = list(features[key])[:context_groups]
    return out


def through_last_vector(features: dict[str, Any]) -> dict[str, Any]:
    """The row cut right after its last vector, without the text after it (a continuation then goes on from the last
    vector, as vectors follow vectors inside the training rows)."""
    if not features["embedding_groups"]:
        return features
    cut = features["embedding_positions"][-1] + 1
    out = dict(features)
    for key in ("input_ids", "labels"):
        out[key] = list(features[key])[:cut]
    return out


def rollout_windows(model, features: dict[str, Any], steps: int,
                    most: int) -> list[tuple[dict[str, Any], int, list[int]]]:
    """Up to `most` rollouts of `steps` target groups each within a row, for scoring forecasts made from the
    model's own outputs: (the row cut after the window's last group, the groups given before it, the target groups
    it forecasts). The target groups of predicted streams (not conditions) are tiled into consecutive
    windows of `steps`, the first starting at the row's first target group; with more than `most`, `most` of them
    spread evenly along the row (the first and the last included). Everything before a window is given as in the
    row; conditions inside it are given too."""
    groups = list(features["embedding_groups"])
    streams = stream_sequence(features)
    targets = sorted({g for g, is_target, name in zip(groups, features["embedding_is_target"], streams)
                      if is_target and not model.config.is_condition(name)})
    starts = list(range(0, len(targets), steps))
    if len(starts) > most:
        starts = [starts[round(j * (len(starts) - 1) / max(most - 1, 1))] for j in range(most)]
    out = []
    for start in starts:
        window = targets[start: start + steps]
        if window[0] == 0 and features["embedding_positions"][0] == 0:
            continue  # nothing precedes the row's first vector to forecast it from
        out.append((context_features(features, window[-1] + 1), window[0], window))
    return out
