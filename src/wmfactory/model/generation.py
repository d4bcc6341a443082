"""Prediction with a world model on the features of one row (the Python API, `predict` and `eval` use it).

- `teacher_forced`: one pass with the true vectors as inputs; the head's prediction for every target group.
- `generate_groups`: the first `context_groups` groups are given, every later group is generated: each vector is
  predicted from the hidden state before it and fed back through the projector; the text between groups stays.
- `continue_stream`: after the end of the row, `steps` more vectors, each fed back.

Generation keeps the decoder's KV cache, so each new vector costs one position, not a pass over the whole row."""

import inspect
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
from transformers import DynamicCache

from ..extras.errors import DataError



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


class _Row:
    """Tensors of one row on the model's device: ids `[t]`, positions `[v]`, vectors `[v, W]` (zero-padded to the
    widest stream), groups `[v]`, streams `[v]` (names, and indices into the model's streams)."""

    def __init__(self, model, features: dict[str, Any]):
        device = model.language_model.device
        self.model = model
        self.features = features
        self.input_ids = torch.as_tensor(features["input_ids"], dtype=torch.long, device=device)
        self.positions = torch.as_tensor(features["embedding_positions"], dtype=torch.long, device=device)
        self.slots = torch.stack([torch.zeros_like(self.positions), self.positions], dim=1)  # [v, 2] (row 0, position)
        self.vectors = torch.as_tensor(vector_stream(features, model.config.embedding_dim), device=device)
        self.groups = list(features["embedding_groups"])
        self.is_target = list(features["embedding_is_target"])
        self.stream_names = stream_sequence(features)
        self.streams = model.stream_names(self.stream_names).to(device)
        dims = model.config.stream_dims
        single = next(iter(dims.values()))
        self.dims = [dims.get(name, single) if model.config.multi_stream else single for name in self.stream_names]

    def stream_of_group(self, group: int) -> str:
        return self.stream_names[self.groups.index(group)]

    def previous_index(self) -> list[int]:
        """For each vector, the index of the vector before it in its stream (-1 for none)."""
        last: dict[str, int] = {}
        out = []
        for i, name in enumerate(self.stream_names):
            key = name if self.model.config.multi_stream else ""
            out.append(last.get(key, -1))
            last[key] = i
        return out

    def group_prediction(self, group: int, predicted: torch.Tensor, horizon: Optional[int] = None,
                         samples: Optional[torch.Tensor] = None):
        indices = [i for i, g in enumerate(self.groups) if g == group]
        d = self.dims[indices[0]]
        return GroupPrediction(
            group=group,
            key=self.features["group_keys"][group],
            occurrence=self.features["group_occurrences"][group],
            vector_indices=indices,
            predicted=predicted.float().cpu().numpy(),
            target=self.vectors[indices][:, :d].float().cpu().numpy(),
            horizon=horizon,
            samples=None if samples is None else samples.float().cpu().numpy(),
            stream=self.stream_names[indices[0]],
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
                  generator: Optional[torch.Generator], stream: str, dim: int) -> torch.Tensor:
    """The next vector of `stream` `[b, dim]` (data units) after each hidden state `[b, h]`: the head's mean, or one
    draw per row when `sampling`. `previous` `[b, dim]` is the vector before in the stream (None: there is none)."""
    has_previous = torch.full((hidden.shape[0],), previous is not None, dtype=torch.bool, device=hidden.device)
    if previous is None:
        previous = hidden.new_zeros((hidden.shape[0], dim), dtype=torch.float32)
    if sampling is None:
        return model.vectors_from_hidden(hidden, previous, has_previous, stream)[1]
    return model.sample_vectors(hidden, previous, has_previous, 1, sampling.temperature, generator, stream)[0]


@torch.no_grad()
def teacher_forced(model, features: dict[str, Any], sampling: Optional[Sampling] = None) -> list[GroupPrediction]:
    """Predictions `[n, d]` for every target group of the row, from the true vectors before each one; with
    `sampling`, also `samples` `[S, n, d]` drawn from the head's distribution."""
    if not features["embedding_groups"]:
        return []  # a text-only row: nothing to predict
    row = _Row(model, features)
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots, embedding_streams=row.streams)
    hidden = model.hidden_states(embeds, None)[0]  # [t, h]
    generator = sampling.generator(hidden.device) if sampling else None
    results = []
    previous, has_previous = model.previous_in_streams(row.vectors, row.slots, row.streams)
    for group in sorted({g for g, t in zip(row.groups, row.is_target) if t}):
        indices = [i for i, (g, t) in enumerate(zip(row.groups, row.is_target)) if g == group and t]
        stream, d = row.stream_names[indices[0]], row.dims[indices[0]]
        before = hidden[row.positions[indices] - 1]
        predicted = model.vectors_from_hidden(before, previous[indices][:, :d], has_previous[indices], stream)[1]
        samples = None if sampling is None else model.sample_vectors(
            before, previous[indices][:, :d], has_previous[indices], sampling.num_samples, sampling.temperature,
            generator, stream)
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
    back; `horizon` counts the generated groups of each stream (1 for the first); groups of condition streams
    (actions, treatments) are always given, as in the row. With `sampling`, S
    trajectories are drawn as one batch: `samples` `[S, n, d]` per group, and `predicted` their mean."""
    row = _Row(model, features)
    count = sampling.num_samples if sampling else 1
    generator = sampling.generator(row.input_ids.device) if sampling else None
    inputs = model.get_input_embeddings()(row.input_ids).clone()  # [t, h]
    vectors = row.vectors.clone()
    given = [g < context_groups or model.config.is_condition(name) for g, name in zip(row.groups, row.stream_names)]
    before = row.previous_index()
    for i, position in enumerate(row.positions.tolist()):
        if given[i]:
            inputs[position] = model.project(vectors[i][None, : row.dims[i]], stream=row.stream_names[i]).to(
                inputs.dtype)[0]
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
        name, d = row.stream_names[i], row.dims[i]
        previous = vectors[:, before[i], :d] if before[i] >= 0 else None
        vectors[:, i, :d] = _next_vectors(model, stream.last_hidden, previous, sampling, generator, name, d)
        inputs[:, position] = model.project(vectors[:, i, :d], stream=name).to(inputs.dtype)
        fed = position
    results = []
    horizon: dict[str, int] = {}  # per stream: generated groups so far
    for group in sorted({g for g, kept in zip(row.groups, given) if not kept}):
        indices = [i for i, g in enumerate(row.groups) if g == group]
        drawn = vectors[:, indices, : row.dims[indices[0]]]
        name = row.stream_names[indices[0]] if model.config.multi_stream else ""
        horizon[name] = horizon.get(name, 0) + 1
        results.append(row.group_prediction(group, drawn.mean(0), horizon=horizon[name],
                                            samples=drawn if sampling else None))
    return results


def emission_order(streams: list[str], pattern: Optional[list[str]] = None) -> Iterator[str]:
    """The streams of the vectors after a row, one per vector: `pattern` repeated, or else the row's own pattern
    continued (`streams`: the stream of each group in reading order; the shortest period that repeats at the row's
    end: s, a, s, a, s -> a, s, a, s, ...)."""
    if pattern:
        return itertools.cycle(pattern)
    n = len(streams)
    for period in range(1, n + 1):
        tail = streams[max(0, n - 2 * period):]
        if all(tail[i] == tail[i - period] for i in range(period, len(tail))):
            break
    cycle = streams[n - period:]
    return itertools.cycle(cycle)


@torch.no_grad()
def continue_stream(model, features: dict[str, Any], steps: int, sampling: Optional[Sampling] = None,
                    conditions: Optional[dict[str, torch.Tensor]] = None,
                    pattern: Optional[list[str]] = None) -> np.ndarray | dict[str, np.ndarray]:
    """`steps` vectors of the predicted streams after the end of the row, each predicted from the last position and
    fed back, `[steps, d]`; with `sampling`, `[S, steps, d]`: S trajectories drawn as one batch, each feeding back
    its own draws. With condition streams, the streams follow `emission_order`, and a vector of a condition stream
    is the next row of `conditions[stream]` `[k, d]` (given, never predicted). When several predicted streams are
    generated, a dict `{stream: [steps_s, d_s]}`."""
    row = _Row(model, features)
    cfg = model.config
    count = sampling.num_samples if sampling else 1
    generator = sampling.generator(row.input_ids.device) if sampling else None
    embeds = model.embed(row.input_ids[None], row.vectors, row.slots, embedding_streams=row.streams)  # [1, t, h]
    stream = _Stream(model)
    stream.feed(embeds)
    stream.repeat(count)
    dims = cfg.stream_dims
    group_streams = [row.stream_of_group(g) for g in sorted(set(row.groups))]
    if not cfg.multi_stream:
        group_streams, pattern = [next(iter(dims))] * len(group_streams), None
    order = emission_order(group_streams, pattern)
    last = {}  # the last vector of each stream, [S, d]
    for i, name in enumerate(row.stream_names):
        last[name if cfg.multi_stream else group_streams[0]] = row.vectors[i, : row.dims[i]][None].repeat(count, 1)
    used = {name: 0 for name in conditions or {}}
    out: dict[str, list[torch.Tensor]] = {}
    generated = 0
    for _ in range(steps * (len(dims) + 1) + len(dims)):  # bounded: a pattern without a predicted stream ends
        if generated == steps:
            break
        name = next(order)
        if cfg.is_condition(name):
            given = (conditions or {}).get(name)
            if given is None or used[name] >= len(given):
                have = 0 if given is None else len(given)
                raise DataError(f"the rollout needs condition vectors of stream '{name}' beyond the {have} given "
                                f"(pass `conditions={{'{name}': array [k, {dims[name]}]}}` with enough rows for "
                                f"{steps} steps).")
            vector = given[used[name]][None].repeat(count, 1).to(row.vectors.device)
            used[name] += 1
        else:
            vector = _next_vectors(model, stream.last_hidden, last.get(name), sampling, generator, name, dims[name])
            out.setdefault(name, []).append(vector)
            generated += 1
        last[name] = vector
        stream.feed(model.project(vector, stream=name)[:, None].to(embeds.dtype))
    if generated < steps:
        raise DataError(f"the rollout pattern {pattern or group_streams} holds no predicted stream.")
    trajectories = {name: torch.stack(v, dim=1).float().cpu().numpy() for name, v in out.items()}  # [S, n, d]
    if not sampling:
        trajectories = {name: t[0] for name, t in trajectories.items()}
    return next(iter(trajectories.values())) if len(trajectories) == 1 else trajectories


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
