"""Prediction on rows whose vectors are known: teacher-forced (one pass, the true vectors as inputs) and generated
groups (the first `context_groups` groups given, every later group generated and fed back, the text between
groups kept). Many rows run as one batch: right-padded, each row seeing exactly what it sees alone; the head runs
row by row with the row's own random generator, so a row's draws do not depend on its batch."""

from typing import Any, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from .decoder import IncrementalDecoder, length_mask, padded_segments, right_padded
from .rows import (
    GroupPrediction,
    Layout,
    RowTensors,
    Sampling,
    frame_tensors,
    next_vectors,
    padded_history,
    with_conditions,
)

@torch.no_grad()
def teacher_forced(model, features: dict[str, Any], sampling: Optional[Sampling] = None) -> list[GroupPrediction]:
    """Predictions `[n, d]` for every target group of the row, from the true vectors before it; with `sampling`,
    also `samples` `[S, n, d]` drawn from the head's distribution."""
    return teacher_forced_rows(model, [features], sampling)[0]


@torch.no_grad()
def teacher_forced_rows(model, rows_features: list[dict[str, Any]],
                        sampling: Optional[Sampling] = None) -> list[list[GroupPrediction]]:
    """`teacher_forced` of each row, with one decoder pass over the rows right-padded into one batch."""
    out: list[list[GroupPrediction]] = [[] for _ in rows_features]
    chosen = [i for i, features in enumerate(rows_features) if features["embedding_groups"]]  # text-only: nothing
    if not chosen:
        return out
    layout = Layout.of(model)
    rows = [RowTensors(model, rows_features[i], layout) for i in chosen]
    ids, lengths = right_padded([row.input_ids for row in rows])  # [b, t], [b]
    slots = torch.cat([torch.stack([torch.full_like(row.positions, b), row.positions], dim=1)
                       for b, row in enumerate(rows)])  # [v, 2] (row in the batch, position)
    vectors, streams = torch.cat([row.vectors for row in rows]), torch.cat([row.streams for row in rows])
    attention = None if len(rows) == 1 else length_mask(lengths, ids.shape[1])
    hidden = model.hidden_states(model.embed(ids, vectors, slots, embedding_streams=streams), attention)  # [b, t, h]
    previous, has_previous = model.frame_inputs(vectors, slots, streams)
    means = _target_means(model, rows, hidden, slots, previous, has_previous)
    means = None if means is None else means.cpu().numpy()
    start = 0
    for b, (i, row) in enumerate(zip(chosen, rows)):
        end = start + len(row.groups)
        out[i] = _teacher_forced_groups(model, row, hidden[b], previous[start:end], has_previous[start:end], sampling,
                                        None if means is None else means[start:end])
        start = end
    return out


def _target_means(model, rows: list["RowTensors"], hidden: torch.Tensor, slots: torch.Tensor, previous: torch.Tensor,
                  has_previous: torch.Tensor) -> Optional[torch.Tensor]:
    """The head's mean at every target vector of the batch `[v, W]` (data units; zeros elsewhere), one head call per
    stream; None when a head's mean is not row by row (a diffusion head averages draws whose noise depends on how
    many vectors it is given: it runs group by group, as alone)."""
    names = [name for row in rows for name in row.stream_names]
    targets = [t for row in rows for t in row.is_target]
    dims = [d for row in rows for d in row.dims]
    means = previous.new_zeros((previous.shape[0], previous.shape[-1]), dtype=torch.float32)
    for name in dict.fromkeys(n for n, t in zip(names, targets) if t):
        if not model.stream_part("prediction_head", name).mean_is_cheap:
            return None
        index = torch.tensor([i for i, (n, t) in enumerate(zip(names, targets)) if t and n == name],
                             device=slots.device)
        d = dims[index[0]]
        before = hidden[slots[index, 0], slots[index, 1] - 1]
        means[index, :d] = model.vectors_from_hidden(before, previous[index], has_previous[index], name)[1]
    return means


def _teacher_forced_groups(model, row: "RowTensors", hidden: torch.Tensor, previous: torch.Tensor,
                           has_previous: torch.Tensor, sampling: Optional[Sampling],
                           means: Optional[np.ndarray] = None) -> list[GroupPrediction]:
    """The head on the hidden states `[t, h]` of one row, group by group (`means` `[v, W]`: the head's means at the
    row's targets, when computed for the whole batch)."""
    generator = sampling.generator(hidden.device) if sampling else None
    results = []
    for group in sorted({g for g, t in zip(row.groups, row.is_target) if t}):
        indices = [i for i in row.group_indices[group] if row.is_target[i]]
        stream, d = row.stream_names[indices[0]], row.dims[indices[0]]
        before = hidden[row.positions[indices] - 1] if means is None or sampling else None
        if means is None:
            predicted = model.vectors_from_hidden(before, previous[indices], has_previous[indices], stream)[1]
        else:
            predicted = means[indices, :d]
        samples = None if sampling is None else model.sample_vectors(
            before, previous[indices], has_previous[indices], sampling.num_samples, sampling.temperature,
            generator, stream)
        results.append(row.group_prediction(group, predicted, samples=samples))
    return results


@torch.no_grad()
def generate_groups(model, features: dict[str, Any], context_groups: int = 1,
                    sampling: Optional[Sampling] = None) -> list[GroupPrediction]:
    """Groups `>= context_groups` generated autoregressively (text between groups as in the row), each vector fed
    back; `horizon` counts the generated groups of each stream (1 for the first); groups of condition streams
    (actions, treatments) are always given, as in the row. With `sampling`, S
    trajectories are drawn as one batch: `samples` `[S, n, d]` per group, and `predicted` their mean."""
    return generate_rows(model, [features], context_groups, sampling)[0]


class _Generation:
    """One row being generated: its inputs `[S, t, h]` and vectors `[S, v, W]` (one copy per trajectory), the vectors
    to generate as (index, position) in reading order, and how far the decoder has read it."""

    def __init__(self, model, features: dict[str, Any], context_groups: int, count: int,
                 sampling: Optional[Sampling], layout: Optional[Layout] = None):
        row = self.row = RowTensors(model, features, layout)
        self.model = model
        self.generator = sampling.generator(row.input_ids.device) if sampling else None
        inputs = model.get_input_embeddings()(row.input_ids).clone()  # [t, h]
        kinds = {name: model.config.stream_kind(name) for name in set(row.stream_names)}
        self.given = [g < context_groups or not kinds[name].predicted
                      for g, name in zip(row.groups, row.stream_names)]
        # a past-only stream (neither predicted nor given in the future) is unknown after the context: its vectors
        # there are left out of the sequence, as the engine's rollouts leave them out
        dropped = [g >= context_groups and not (kinds[name].predicted or kinds[name].given_in_future)
                   for g, name in zip(row.groups, row.stream_names)]
        self.before = row.previous_index()
        self.k = model.config.ridge_history
        self.history = row.history_index(self.k) if model.config.ridge_frame else None
        self.frame_conditions = model.config.frame_conditions  # [(stream, d)] the frame's ridge reads
        self.condition_index = row.condition_index(self.k, [name for name, _ in self.frame_conditions])
        self.events = [(i, position) for i, position in enumerate(row.positions.tolist()) if not self.given[i]]
        groups_so_far: dict[str, list[int]] = {}  # the generated groups of each stream, for each event's horizon
        self.horizons = []
        for i, _ in self.events:
            seen = groups_so_far.setdefault(row.stream_names[i], [])
            if row.groups[i] not in seen:
                seen.append(row.groups[i])
            self.horizons.append(len(seen))
        for name in set(row.stream_names):  # the given vectors of each stream through its projector at once
            index = [i for i, (kept, other, gone) in enumerate(zip(self.given, row.stream_names, dropped))
                     if kept and not gone and other == name]
            if index:
                d = row.dims[index[0]]
                inputs[row.positions[index]] = model.project(row.vectors[index, :d], stream=name).to(inputs.dtype)
        if any(dropped):
            keep = torch.ones(len(inputs), dtype=torch.bool, device=inputs.device)
            keep[row.positions[torch.tensor(dropped, device=row.positions.device)]] = False
            before = torch.cumsum(~keep, 0).tolist()  # positions dropped at or before each position
            inputs = inputs[keep]
            self.events = [(i, position - before[position]) for i, position in self.events]
        if self.events and self.events[0][1] == 0:
            raise DataError("the first generated vector sits at position 0: nothing precedes it to predict it")
        self.inputs = inputs[None].repeat(count, 1, 1)  # [S, t, h]
        self.vectors = row.vectors[None].repeat(count, 1, 1)  # [S, v, W]
        self.fed = 0

    def frame_inputs(self, i: int, d: int) -> tuple[Optional[torch.Tensor], Optional[int]]:
        """The vectors before vector `i` in its stream that its frame starts from, as generated so far: the previous
        one `[S, d]` (None: there is none), or with a ridge frame the last k `[S, k, d]` and how many there are."""
        if self.history is None:
            return (self.vectors[:, self.before[i], :d] if self.before[i] >= 0 else None), None
        history = padded_history(self.vectors[:, self.history[i], :d], self.k)
        if self.frame_conditions:
            history = with_conditions(history, [self.vectors[:, index, :dc] for index, (_, dc) in
                                                 zip(self.condition_index[i], self.frame_conditions)], self.k)
        return history, len(self.history[i])

    def segment(self, step: int, sequences: int) -> torch.Tensor:
        """The positions to feed before generated vector number `step` `[sequences, n, h]` (n = 0 when done)."""
        end = self.events[step][1] if step < len(self.events) else self.fed
        return self.inputs[:sequences, self.fed:end]

    def feed_back(self, step: int, vector: torch.Tensor) -> None:
        """Generated vector number `step` `[S, d]`: kept, and written through its projector at its position."""
        i, position = self.events[step]
        name, d = self.row.stream_names[i], self.row.dims[i]
        self.vectors[:, i, :d] = vector
        self.inputs[:, position] = self.model.project(vector, stream=name).to(self.inputs.dtype)
        self.fed = position

    def results(self, sampling: Optional[Sampling]) -> list[GroupPrediction]:
        row, out = self.row, []
        horizon: dict[str, int] = {}  # per stream: generated groups so far
        for group in sorted({g for g, kept in zip(row.groups, self.given) if not kept}):
            indices = [i for i, g in enumerate(row.groups) if g == group]
            drawn = self.vectors[:, indices, : row.dims[indices[0]]]
            name = row.stream_names[indices[0]]
            horizon[name] = horizon.get(name, 0) + 1
            out.append(row.group_prediction(group, drawn.mean(0), horizon=horizon[name],
                                            samples=drawn if sampling else None))
        return out


@torch.no_grad()
def generate_rows(model, rows_features: list[dict[str, Any]], context_groups: int | list[int] = 1,
                  sampling: Optional[Sampling] = None) -> list[list[GroupPrediction]]:
    """`generate_groups` of each row, as one batch: step k feeds every row up to its k-th generated vector (the
    rows' segments padded to the longest), then predicts that vector of each row from its last hidden state, with
    the row's own generator. `context_groups`: one count for every row, or one per row."""
    count = sampling.num_samples if sampling else 1
    layout = Layout.of(model)
    given = [context_groups] * len(rows_features) if isinstance(context_groups, int) else list(context_groups)
    rows = [_Generation(model, features, c, count, sampling, layout) for features, c in zip(rows_features, given)]
    active = [row for row in rows if row.events]
    stream = IncrementalDecoder(model)
    for step in range(max((len(row.events) for row in active), default=0)):
        first = stream.last_hidden is None  # the shared context once per row, then one copy per trajectory
        stream.feed(*padded_segments([row.segment(step, 1 if first else count) for row in active]))
        if first:
            stream.fork(count)
        hidden = stream.last_hidden.view(len(active), count, -1)  # [rows, S, h]
        waiting: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}  # stream -> (row, frame inputs)
        for j, (row, row_hidden) in enumerate(zip(active, hidden)):
            if step >= len(row.events):
                continue
            i, _ = row.events[step]
            name, d = row.row.stream_names[i], row.row.dims[i]
            previous, known = row.frame_inputs(i, d)
            if sampling is None and model.stream_part("prediction_head", name).mean_is_cheap:
                waiting.setdefault(name, []).append((j, *frame_tensors(previous, known, count, d, row_hidden)))
            else:
                row.feed_back(step, next_vectors(model, row_hidden, previous, sampling, row.generator, name, d, known,
                                                 row.horizons[step]))
        for name, chosen in waiting.items():  # the head's means of one stream for every row at once
            means = model.vectors_from_hidden(hidden[[j for j, _, _ in chosen]].flatten(0, 1),
                                              torch.cat([p for _, p, _ in chosen]),
                                              torch.cat([k for _, _, k in chosen]), name)[1]
            for (j, _, _), vector in zip(chosen, means.view(len(chosen), count, -1)):
                active[j].feed_back(step, vector)
    return [row.results(sampling) for row in rows]
