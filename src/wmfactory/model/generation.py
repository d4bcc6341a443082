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

from ..extras.errors import DataError

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
    samples: Optional[np.ndarray] = None  # [S, n, d] draws from the head's distribution, when asked for


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

    def group_prediction(self, group: int, predicted: torch.Tensor, horizon: Optional[int] = None,
                         samples: Optional[torch.Tensor] = None):
        indices = [i for i, g in enumerate(self.groups) if g == group]
        return GroupPrediction(
            group=group,
            key=self.features["group_keys"][group],
            occurrence=self.features["group_occurrences"][group],
            vector_indices=indices,
            predicted=predicted.float().cpu().numpy(),
            target=self.vectors[indices].float().cpu().numpy(),
            horizon=horizon,
            samples=None if samples is None else samples.float().cpu().numpy(),
        )


@dataclass
class Sampling:
    """Draw `num_samples` trajectories from the head's distribution, with `temperature` scaling its spread (None: the
    model's calibrated `sampling_temperature`); `seed` makes the draws reproducible."""

    num_samples: int
    temperature: Optional[float] = None
    seed: Optional[int] = None

    def generator(self, device) -> Optional[torch.Generator]:
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


def _next_vectors(model, hidden: torch.Tensor, previous: Optional[torch.Tensor], sampling: Optional[Sampling],
                  generator: Optional[torch.Generator]) -> torch.Tensor:
    """The next vector `[b, d]` (data units) after each hidden state `[b, h]`: the head's mean, or one draw per row
    when `sampling`. `previous` `[b, d]` is the vector before (None for the first of a row)."""
    has_previous = torch.full((hidden.shape[0],), previous is not None, dtype=torch.bool, device=hidden.device)
    if previous is None:
        previous = hidden.new_zeros((hidden.shape[0], model.config.embedding_dim), dtype=torch.float32)
    if sampling is None:
        return model.vectors_from_hidden(hidden, previous, has_previous)[1]
    return model.sample_vectors(hidden, previous, has_previous, 1, sampling.temperature, generator)[0]


@torch.no_grad()
def teacher_forced(model, features: dict[str, Any], sampling: Optional[Sampling] = None) -> list[GroupPrediction]:
    """Predictions `[n, d]` for every target group of the row, from the true vectors before each one; with
    `sampling`, also `samples` `[S, n, d]` drawn from the head's distribution."""
    if not features["embedding_groups"]:
        return []  # a text-only row: nothing to predict
    row = _Row(model, features)
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots)
    hidden = model.hidden_states(embeds, None)[0]  # [t, h]
    generator = sampling.generator(hidden.device) if sampling else None
    results = []
    previous, has_previous = previous_vectors(row.vectors, row.slots)
    for group in sorted({g for g, t in zip(row.groups, row.is_target) if t}):
        indices = [i for i, (g, t) in enumerate(zip(row.groups, row.is_target)) if g == group and t]
        before = hidden[row.positions[indices] - 1]
        predicted = model.vectors_from_hidden(before, previous[indices], has_previous[indices])[1]
        samples = None if sampling is None else model.sample_vectors(
            before, previous[indices], has_previous[indices], sampling.num_samples, sampling.temperature, generator)
        results.append(row.group_prediction(group, predicted, samples=samples))
    return results


class _Stream:
    """The decoder run incrementally over a batch of sequences, with its KV cache."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder()
        # the decoder fills this cache in place; transformers renamed its argument `past_key_values` -> `cache`
        self.cache = DynamicCache()
        parameters = inspect.signature(self.decoder.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.last_hidden: Optional[torch.Tensor] = None  # [b, h] at the last position fed

    def feed(self, inputs_embeds: torch.Tensor) -> None:
        """`inputs_embeds`: `[b, n, h]` for the next n positions of each sequence."""
        out = self.decoder(inputs_embeds=inputs_embeds, use_cache=True, **{self.cache_argument: self.cache})
        self.last_hidden = out.last_hidden_state[:, -1]

    def repeat(self, times: int) -> None:
        """One sequence becomes `times` identical ones (each trajectory continues from the shared context)."""
        if times > 1:
            self.cache.batch_repeat_interleave(times)
            self.last_hidden = self.last_hidden.repeat_interleave(times, dim=0)


@torch.no_grad()
def generate_groups(model, features: dict[str, Any], context_groups: int = 1,
                    sampling: Optional[Sampling] = None) -> list[GroupPrediction]:
    """Groups `>= context_groups` generated autoregressively (text between groups as in the row), each vector fed
    back. With `sampling`, S trajectories are drawn as one batch: `samples` `[S, n, d]` per group, and `predicted`
    their mean."""
    row = _Row(model, features)
    count = sampling.num_samples if sampling else 1
    generator = sampling.generator(row.input_ids.device) if sampling else None
    inputs = model.get_input_embeddings()(row.input_ids).clone()  # [t, h]
    vectors = row.vectors.clone()
    given = [g < context_groups for g in row.groups]
    for i, position in enumerate(row.positions.tolist()):
        if given[i]:
            inputs[position] = model.project(vectors[i][None]).to(inputs.dtype)[0]
    inputs, vectors = inputs[None].repeat(count, 1, 1), vectors[None].repeat(count, 1, 1)  # [S, t, h], [S, v, d]
    stream = _Stream(model)
    fed = 0
    for i, position in enumerate(row.positions.tolist()):
        if given[i]:
            continue
        if position == 0:
            raise DataError("the first generated vector sits at position 0: nothing precedes it to predict it")
        if stream.last_hidden is None:  # the shared context once, then one copy per trajectory
            stream.feed(inputs[:1, fed:position])
            stream.repeat(count)
        else:
            stream.feed(inputs[:, fed:position])
        vectors[:, i] = _next_vectors(model, stream.last_hidden, vectors[:, i - 1] if i > 0 else None, sampling,
                                      generator)
        inputs[:, position] = model.project(vectors[:, i]).to(inputs.dtype)
        fed = position
    results = []
    for group in sorted({g for g in row.groups if g >= context_groups}):
        indices = [i for i, g in enumerate(row.groups) if g == group]
        drawn = vectors[:, indices]
        results.append(row.group_prediction(group, drawn.mean(0), horizon=group - context_groups + 1,
                                            samples=drawn if sampling else None))
    return results


@torch.no_grad()
def continue_stream(model, features: dict[str, Any], steps: int, sampling: Optional[Sampling] = None) -> np.ndarray:
    """`steps` vectors `[steps, d]` after the end of the row, each predicted from the last position and fed back;
    with `sampling`, `[S, steps, d]`: S trajectories drawn as one batch, each feeding back its own draws."""
    row = _Row(model, features)
    count = sampling.num_samples if sampling else 1
    generator = sampling.generator(row.input_ids.device) if sampling else None
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots)  # [1, t, h]
    stream = _Stream(model)
    stream.feed(embeds)
    stream.repeat(count)
    out = []
    last = row.vectors[-1:].repeat(count, 1) if len(row.vectors) else None  # [S, d]
    for _ in range(steps):
        last = _next_vectors(model, stream.last_hidden, last, sampling, generator)
        out.append(last)
        stream.feed(model.project(last)[:, None].to(embeds.dtype))
    trajectories = torch.stack(out, dim=1).float().cpu().numpy()  # [S, steps, d]
    return trajectories if sampling else trajectories[0]


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
