"""Prediction with a world model on the features of one row (the Python API, `predict` and `eval` use it).

- `teacher_forced`: one pass with the true vectors as inputs; the head's prediction for every target group.
- `generate_groups`: the first `context_groups` groups are given, every later group is generated: each vector is
  predicted from the hidden state before it and fed back through the projector; the text between groups stays.
- `continue_stream`: after the end of the row, `steps` more vectors, each fed back.

Generation keeps the decoder's KV cache, so each new vector costs one position, not a pass over the whole row."""

import inspect
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from transformers import DynamicCache

from .heads import previous_vectors


@dataclass
class GroupPrediction:
    group: int  # placeholder occurrence in reading order
    key: str
    occurrence: int
    vector_indices: list[int]  # indices into the row's vector stream
    predicted: np.ndarray  # [n, d]
    target: np.ndarray  # [n, d]
    horizon: Optional[int] = None  # generated groups: 1 for the first group after the context


def vector_stream(features: dict[str, Any]) -> np.ndarray:
    """The row's vectors in reading order, `[v, d]` float32, whatever nesting the dataset returned them in."""
    return np.asarray(features["embedding_vectors"], dtype=np.float32).reshape(len(features["embedding_groups"]), -1)


class _Row:
    """Tensors of one row on the model's device: ids `[t]`, positions `[v]`, vectors `[v, d]`, groups `[v]`."""

    def __init__(self, model, features: dict[str, Any]):
        device = model.statistics.mean.device
        self.features = features
        self.input_ids = torch.as_tensor(features["input_ids"], dtype=torch.long, device=device)
        self.positions = torch.as_tensor(features["embedding_positions"], dtype=torch.long, device=device)
        self.slots = torch.stack([torch.zeros_like(self.positions), self.positions], dim=1)  # [v, 2] (row 0, position)
        self.vectors = torch.as_tensor(vector_stream(features), device=device)
        self.groups = list(features["embedding_groups"])
        self.is_target = list(features["embedding_is_target"])

    def group_prediction(self, group: int, predicted: torch.Tensor, horizon: Optional[int] = None):
        indices = [i for i, g in enumerate(self.groups) if g == group]
        return GroupPrediction(
            group=group,
            key=self.features["group_keys"][group],
            occurrence=self.features["group_occurrences"][group],
            vector_indices=indices,
            predicted=predicted.float().cpu().numpy(),
            target=self.vectors[indices].float().cpu().numpy(),
            horizon=horizon,
        )


def _predict(model, hidden: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
    """Head on `[n, h]` -> vectors `[n, d]` in data units; `previous` `[n, d]` is the vector before each (None for
    the first of a row)."""
    if previous is None:
        previous = hidden.new_zeros((hidden.shape[0], model.config.embedding_dim), dtype=torch.float32)
        has_previous = torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    else:
        has_previous = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    return model.vectors_from_hidden(hidden, previous, has_previous)[1]


@torch.no_grad()
def teacher_forced(model, features: dict[str, Any]) -> list[GroupPrediction]:
    """Predictions `[n, d]` for every target group of the row, from the true vectors before each one."""
    if not features["embedding_groups"]:
        return []  # a text-only row: nothing to predict
    row = _Row(model, features)
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots)
    hidden = model.hidden_states(embeds, None)[0]  # [t, h]
    results = []
    previous, has_previous = previous_vectors(row.vectors, row.slots)
    for group in sorted({g for g, t in zip(row.groups, row.is_target) if t}):
        indices = [i for i, (g, t) in enumerate(zip(row.groups, row.is_target)) if g == group and t]
        predicted = model.vectors_from_hidden(hidden[row.positions[indices] - 1], previous[indices],
                                              has_previous[indices])[1]
        results.append(row.group_prediction(group, predicted))
    return results


class _Stream:
    """The decoder run incrementally over one sequence, with its KV cache."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder()
        # the decoder fills this cache in place; transformers renamed its argument `past_key_values` -> `cache`
        self.cache = DynamicCache()
        parameters = inspect.signature(self.decoder.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.last_hidden: Optional[torch.Tensor] = None  # [h] at the last position fed

    def feed(self, inputs_embeds: torch.Tensor) -> None:
        """`inputs_embeds`: `[n, h]` for the next n positions."""
        out = self.decoder(inputs_embeds=inputs_embeds[None], use_cache=True, **{self.cache_argument: self.cache})
        self.last_hidden = out.last_hidden_state[0, -1]

    def predict(self, previous: Optional[torch.Tensor]) -> torch.Tensor:
        """The next vector `[d]` (data units), after `previous` `[d]` (None: the first of the row)."""
        return _predict(self.model, self.last_hidden[None], None if previous is None else previous[None])[0]


@torch.no_grad()
def generate_groups(model, features: dict[str, Any], context_groups: int = 1) -> list[GroupPrediction]:
    """Groups `>= context_groups` generated autoregressively (text between groups as in the row)."""
    row = _Row(model, features)
    token_embeds = model.get_input_embeddings()(row.input_ids)  # [t, h]
    inputs = token_embeds.clone()
    vectors = row.vectors.clone()
    given = [g < context_groups for g in row.groups]
    for i, position in enumerate(row.positions.tolist()):
        if given[i]:
            inputs[position] = model.project(vectors[i][None]).to(inputs.dtype)[0]
    stream = _Stream(model)
    fed = 0
    for i, position in enumerate(row.positions.tolist()):
        if given[i]:
            continue
        if position == 0:
            raise ValueError("the first generated vector sits at position 0: nothing precedes it to predict it")
        stream.feed(inputs[fed:position])
        vectors[i] = stream.predict(vectors[i - 1] if i > 0 else None)
        inputs[position] = model.project(vectors[i][None]).to(inputs.dtype)[0]
        fed = position
    results = []
    for group in sorted({g for g in row.groups if g >= context_groups}):
        indices = [i for i, g in enumerate(row.groups) if g == group]
        results.append(row.group_prediction(group, vectors[indices], horizon=group - context_groups + 1))
    return results


@torch.no_grad()
def continue_stream(model, features: dict[str, Any], steps: int) -> np.ndarray:
    """`steps` vectors `[steps, d]` after the end of the row, each predicted from the last position and fed back."""
    row = _Row(model, features)
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots)[0]
    stream = _Stream(model)
    stream.feed(embeds)
    out = []
    last = row.vectors[-1] if len(row.vectors) else None
    for _ in range(steps):
        last = stream.predict(last)
        out.append(last)
        stream.feed(model.project(last[None]).to(embeds.dtype))
    d = model.config.embedding_dim
    return torch.stack(out).float().cpu().numpy() if out else np.zeros((0, d), dtype=np.float32)


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
    for key in ("embedding_positions", "embedding_is_target", "embedding_groups"):
        out[key] = list(features[key])[:first]
    out["embedding_vectors"] = vector_stream(features)[:first]
    for key in ("group_keys", "group_occurrences", "group_in_assistant"):
        out[key] = list(features[key])[:context_groups]
    return out
