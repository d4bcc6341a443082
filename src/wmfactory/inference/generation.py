"""Prediction on rows whose vectors are known: teacher-forced (one pass, the true vectors as inputs) and generated
groups (the first `context_groups` groups given, every later group generated and fed back, the text between
groups kept). Many rows run as one batch: right-padded, each row seeing exactly what it sees alone; the head runs
row by row with the row's own random generator, so a row's draws do not depend on its batch."""

from typing import Any, Optional

import numpy as np
import torch

from .decoder import length_mask, right_padded
from .engine import Session
from .rows import GroupPrediction, Layout, RowTensors, Sampling, batch_slots

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
    slots = batch_slots(rows)  # [v, 2] (row in the batch, position)
    # `missing_values: mask`: the frame's linear fill of each gap (`missing_fill`), which reads only the vectors up
    # to it; `fill_row_gaps` would read the targets after it
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


@torch.no_grad()
def generate_rows(model, rows_features: list[dict[str, Any]], context_groups: int | list[int] = 1,
                  sampling: Optional[Sampling] = None) -> list[list[GroupPrediction]]:
    """`generate_groups` of each row, as one batch: the engine's `Session` over the rows in their own layout (step
    k feeds every row up to its k-th generated vector, the rows' segments padded to the longest, then predicts that
    vector of each row from its last hidden state, with the row's own generator). `context_groups`: one count for
    every row, or one per row."""
    if not rows_features:
        return []
    return [row.result() for row in Session(model, rows_features, context_groups).run(sampling=sampling)]
