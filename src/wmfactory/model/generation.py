"""Prediction with a world model on the features of one row (the Python API, `predict` and `eval` use it).

- `teacher_forced`: one pass with the true vectors as inputs; the head's prediction for every target group.
- `generate_groups`: the first `context_groups` groups are given, every later group is generated: each vector is
  predicted from the hidden state before it and fed back through the projector; the text between groups stays.
- `continue_stream`: after the end of the row, `steps` more vectors, each fed back.

Generation keeps the decoder's KV cache, so each new vector costs one position, not a pass over the whole row.

`teacher_forced_rows`, `generate_rows` and `continue_rows` run many rows as one batch (`predict` and `eval` use them
with `per_device_eval_batch_size`): rows are right-padded, and the positions each row feeds are padded to the longest
of the batch, with an attention mask over the whole KV cache and the row's own position ids, so that every row sees
exactly what it sees alone. The head runs row by row, each row with its own random generator seeded by
`Sampling.seed`: a row's draws do not depend on the batch it is in. The one-row functions are these on one row."""

import inspect
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

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


@dataclass
class _Layout:
    """What every row of a batch reads from the model, read once (a config attribute costs microseconds)."""

    device: torch.device
    width: int  # the widest stream's dimension
    dims: dict[str, int]
    multi_stream: bool

    @classmethod
    def of(cls, model) -> "_Layout":
        cfg = model.config
        return cls(model.language_model.device, cfg.embedding_dim, cfg.stream_dims, cfg.multi_stream)


class _Row:
    """Tensors of one row on the model's device: ids `[t]`, positions `[v]`, vectors `[v, W]` (zero-padded to the
    widest stream), groups `[v]`, streams `[v]` (names, and indices into the model's streams)."""

    def __init__(self, model, features: dict[str, Any], layout: Optional[_Layout] = None):
        layout = layout or _Layout.of(model)
        device = layout.device
        self.model = model
        self.features = features
        self.input_ids = torch.as_tensor(features["input_ids"], dtype=torch.long, device=device)
        self.positions = torch.as_tensor(features["embedding_positions"], dtype=torch.long, device=device)
        self.vectors = torch.as_tensor(vector_stream(features, layout.width), device=device)
        self._targets: Optional[np.ndarray] = None
        self.groups = list(features["embedding_groups"])
        self.is_target = list(features["embedding_is_target"])
        self.stream_names = stream_sequence(features)
        self.multi_stream = multi_stream = layout.multi_stream
        if multi_stream:
            self.streams = model.stream_names(self.stream_names).to(device)
        else:
            self.streams = torch.zeros(len(self.stream_names), dtype=torch.long, device=device)
        dims = layout.dims
        single = next(iter(dims.values()))
        self.dims = [dims.get(name, single) if multi_stream else single for name in self.stream_names]
        self.group_indices: dict[int, list[int]] = {}  # group -> indices of its vectors
        for i, group in enumerate(self.groups):
            self.group_indices.setdefault(group, []).append(i)

    def stream_of_group(self, group: int) -> str:
        return self.stream_names[self.groups.index(group)]

    def previous_index(self) -> list[int]:
        """For each vector, the index of the vector before it in its stream (-1 for none)."""
        return [before[0] if before else -1 for before in self.history_index(1)]

    def history_index(self, k: int) -> list[list[int]]:
        """For each vector, the indices of the up to k vectors before it in its stream, most recent first."""
        seen: dict[str, list[int]] = {}
        out = []
        for i, name in enumerate(self.stream_names):
            earlier = seen.setdefault(name if self.multi_stream else "", [])
            out.append(earlier[-k:][::-1])
            earlier.append(i)
        return out

    def condition_index(self, k: int, names: list[str]) -> list[list[list[int]]]:
        """For each vector, for each condition stream of `names`, the indices of the up to k vectors of that stream
        before it, most recent first."""
        seen: dict[str, list[int]] = {name: [] for name in names}
        out = []
        for i, name in enumerate(self.stream_names):
            out.append([seen[c][-k:][::-1] for c in names])
            if name in seen:
                seen[name].append(i)
        return out

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


def _padded_history(vectors: torch.Tensor, k: int) -> torch.Tensor:
    """`[S, n, d]` (n <= k vectors, most recent first) -> `[S, k, d]`, zeros after the n."""
    out = vectors.new_zeros((vectors.shape[0], k, vectors.shape[-1]))
    out[:, : vectors.shape[1]] = vectors
    return out


def _with_conditions(history: torch.Tensor, conditions: list[torch.Tensor], k: int) -> torch.Tensor:
    """A ridge frame's history `[S, k, d]` with the last k vectors of each condition stream (`[S, n_c, d_c]`, most
    recent first) in the last columns, as `WorldModel.frame_inputs` lays them out: `[S, k, d + sum d_c]`."""
    return torch.cat([history.float()] + [_padded_history(c.float(), k) for c in conditions], dim=-1)


def _next_vectors(model, hidden: torch.Tensor, previous: Optional[torch.Tensor], sampling: Optional[Sampling],
                  generator: Optional[torch.Generator], stream: str, dim: int,
                  count: Optional[int] = None) -> torch.Tensor:
    """The next vector of `stream` `[b, dim]` (data units) after each hidden state `[b, h]`: the head's mean, or one
    draw per row when `sampling`. `previous` `[b, dim]` is the vector before in the stream (None: there is none); for
    a ridge frame, the last k vectors `[b, k, dim]` of which `count` are there."""
    if count is not None:
        has_previous = torch.full((hidden.shape[0],), count, dtype=torch.long, device=hidden.device)
    else:
        has_previous = torch.full((hidden.shape[0],), previous is not None, dtype=torch.bool, device=hidden.device)
    if previous is None:
        previous = hidden.new_zeros((hidden.shape[0], dim), dtype=torch.float32)
    if sampling is None:
        return model.vectors_from_hidden(hidden, previous, has_previous, stream)[1]
    return model.sample_vectors(hidden, previous, has_previous, 1, sampling.temperature, generator, stream)[0]


def row_batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in lists of `size` (the last may be shorter)."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, max(1, size))):
        yield chunk


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
    layout = _Layout.of(model)
    rows = [_Row(model, rows_features[i], layout) for i in chosen]
    ids, lengths = _right_padded([row.input_ids for row in rows])  # [b, t], [b]
    slots = torch.cat([torch.stack([torch.full_like(row.positions, b), row.positions], dim=1)
                       for b, row in enumerate(rows)])  # [v, 2] (row in the batch, position)
    vectors, streams = torch.cat([row.vectors for row in rows]), torch.cat([row.streams for row in rows])
    attention = None if len(rows) == 1 else _mask(lengths, ids.shape[1])
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


def _target_means(model, rows: list["_Row"], hidden: torch.Tensor, slots: torch.Tensor, previous: torch.Tensor,
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


def _teacher_forced_groups(model, row: "_Row", hidden: torch.Tensor, previous: torch.Tensor,
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


def _right_padded(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences `[t_i, ...]` -> (`[b, max t_i, ...]` zero-padded at the end, lengths `[b]`)."""
    lengths = torch.tensor([len(x) for x in sequences], device=sequences[0].device)
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True), lengths


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`[b, width]` long: 1 on the first `lengths[i]` positions of row i."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()


class _Stream:
    """The decoder run incrementally over a batch of sequences, with its KV cache. Each feed gives every sequence
    its next positions, padded at the end to the longest; the mask over the whole cache hides the padding from every
    later position, and the position ids count each sequence's own positions only."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder()
        # the decoder fills this cache in place; transformers renamed its argument `past_key_values` -> `cache`
        self.cache = DynamicCache()
        parameters = inspect.signature(self.decoder.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.last_hidden: Optional[torch.Tensor] = None  # [b, h] at the last position fed to each sequence
        self.mask: Optional[torch.Tensor] = None  # [b, positions in the cache]
        self.lengths: Optional[torch.Tensor] = None  # [b] positions of each sequence so far (padding excluded)

    def feed(self, inputs_embeds: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> None:
        """`inputs_embeds`: `[b, n, h]`, the next `lengths[i]` (default n) positions of sequence i, then padding.
        A sequence with nothing to feed (length 0) keeps its `last_hidden`."""
        b, n = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if lengths is None:
            lengths = torch.full((b,), n, device=device)
        if self.lengths is None:
            self.lengths, self.mask = torch.zeros_like(lengths), lengths.new_zeros((b, 0))
        self.mask = torch.cat([self.mask, _mask(lengths, n)], dim=1)
        position_ids = self.lengths[:, None] + torch.arange(n, device=device)[None, :]
        out = self.decoder(inputs_embeds=inputs_embeds, attention_mask=self.mask, position_ids=position_ids,
                           use_cache=True, **{self.cache_argument: self.cache})
        last = out.last_hidden_state[torch.arange(b, device=device), (lengths - 1).clamp(min=0)]
        fed = (lengths > 0)[:, None]
        self.last_hidden = last if self.last_hidden is None else torch.where(fed, last, self.last_hidden)
        self.lengths = self.lengths + lengths

    def repeat(self, times: int) -> None:
        """Each sequence becomes `times` identical ones, next to each other (each trajectory continues from its
        row's context)."""
        if times > 1:
            self.cache.batch_repeat_interleave(times)
            self.last_hidden = self.last_hidden.repeat_interleave(times, dim=0)
            self.mask = self.mask.repeat_interleave(times, dim=0)
            self.lengths = self.lengths.repeat_interleave(times, dim=0)


def _padded_segments(segments: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the next positions of its `c` sequences `[c, n_i, h]` -> (`[rows * c, max n_i, h]` padded at the end,
    lengths `[rows * c]`)."""
    width = max(segment.shape[1] for segment in segments)
    padded = torch.cat([torch.nn.functional.pad(segment, (0, 0, 0, width - segment.shape[1]))
                        for segment in segments])
    lengths = torch.tensor([segment.shape[1] for segment in segments for _ in range(segment.shape[0])],
                           device=padded.device)
    return padded, lengths


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
                 sampling: Optional[Sampling], layout: Optional[_Layout] = None):
        row = self.row = _Row(model, features, layout)
        self.generator = sampling.generator(row.input_ids.device) if sampling else None
        inputs = model.get_input_embeddings()(row.input_ids).clone()  # [t, h]
        condition = {name: model.config.is_condition(name) for name in set(row.stream_names)}
        self.given = [g < context_groups or condition[name] for g, name in zip(row.groups, row.stream_names)]
        self.before = row.previous_index()
        self.k = model.config.ridge_history
        self.history = row.history_index(self.k) if model.config.predict_residual == "ridge" else None
        self.frame_conditions = model.config.frame_conditions  # [(stream, d)] the frame's ridge reads
        self.condition_index = row.condition_index(self.k, [name for name, _ in self.frame_conditions])
        self.events = [(i, position) for i, position in enumerate(row.positions.tolist()) if not self.given[i]]
        for name in set(row.stream_names):  # the given vectors of each stream through its projector at once
            index = [i for i, (kept, other) in enumerate(zip(self.given, row.stream_names)) if kept and other == name]
            if index:
                d = row.dims[index[0]]
                inputs[row.positions[index]] = model.project(row.vectors[index, :d], stream=name).to(inputs.dtype)
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
        history = _padded_history(self.vectors[:, self.history[i], :d], self.k)
        if self.frame_conditions:
            history = _with_conditions(history, [self.vectors[:, index, :dc] for index, (_, dc) in
                                                 zip(self.condition_index[i], self.frame_conditions)], self.k)
        return history, len(self.history[i])

    def segment(self, step: int, sequences: int) -> torch.Tensor:
        """The positions to feed before generated vector number `step` `[sequences, n, h]` (n = 0 when done)."""
        end = self.events[step][1] if step < len(self.events) else self.fed
        return self.inputs[:sequences, self.fed:end]

    def results(self, sampling: Optional[Sampling], multi_stream: bool) -> list[GroupPrediction]:
        row, out = self.row, []
        horizon: dict[str, int] = {}  # per stream: generated groups so far
        for group in sorted({g for g, kept in zip(row.groups, self.given) if not kept}):
            indices = [i for i, g in enumerate(row.groups) if g == group]
            drawn = self.vectors[:, indices, : row.dims[indices[0]]]
            name = row.stream_names[indices[0]] if multi_stream else ""
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
    layout = _Layout.of(model)
    given = [context_groups] * len(rows_features) if isinstance(context_groups, int) else list(context_groups)
    rows = [_Generation(model, features, c, count, sampling, layout) for features, c in zip(rows_features, given)]
    active = [row for row in rows if row.events]
    stream = _Stream(model)
    for step in range(max((len(row.events) for row in active), default=0)):
        first = stream.last_hidden is None  # the shared context once per row, then one copy per trajectory
        stream.feed(*_padded_segments([row.segment(step, 1 if first else count) for row in active]))
        if first:
            stream.repeat(count)
        hidden = stream.last_hidden.view(len(active), count, -1)  # [rows, S, h]
        for row, row_hidden in zip(active, hidden):
            if step >= len(row.events):
                continue
            i, position = row.events[step]
            name, d = row.row.stream_names[i], row.row.dims[i]
            previous, known = row.frame_inputs(i, d)
            row.vectors[:, i, :d] = _next_vectors(model, row_hidden, previous, sampling, row.generator, name, d, known)
            row.inputs[:, position] = model.project(row.vectors[:, i, :d], stream=name).to(row.inputs.dtype)
            row.fed = position
    return [row.results(sampling, model.config.multi_stream) for row in rows]


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
    return continue_rows(model, [features], steps, sampling, conditions, pattern)[0]


class _Continuation:
    """One row being continued after its end: the streams to emit in turn, the last vector of each stream `[S, d]`,
    the condition vectors used so far and the vectors generated."""

    def __init__(self, model, features: dict[str, Any], steps: int, sampling: Optional[Sampling],
                 conditions: Optional[dict[str, torch.Tensor]], pattern: Optional[list[str]],
                 layout: Optional[_Layout] = None):
        row = self.row = _Row(model, features, layout)
        cfg = self.config = model.config
        self.model, self.steps, self.sampling, self.conditions = model, steps, sampling, conditions or {}
        self.count = sampling.num_samples if sampling else 1
        self.generator = sampling.generator(row.input_ids.device) if sampling else None
        self.dims = cfg.stream_dims
        group_streams = [row.stream_of_group(g) for g in sorted(set(row.groups))]
        if not cfg.multi_stream:
            group_streams, pattern = [next(iter(self.dims))] * len(group_streams), None
        self.pattern = pattern or group_streams
        self.order = emission_order(group_streams, pattern)
        self.k = cfg.ridge_history if cfg.predict_residual == "ridge" else 1
        self.recent: dict[str, list[torch.Tensor]] = {}  # the last k vectors of each stream, [S, d], latest first
        for i, name in enumerate(row.stream_names):
            key = name if cfg.multi_stream else group_streams[0]
            self.recent.setdefault(key, []).insert(0, row.vectors[i, : row.dims[i]][None].repeat(self.count, 1))
            del self.recent[key][self.k:]
        self.used = {name: 0 for name in self.conditions}
        self.out: dict[str, list[torch.Tensor]] = {}
        self.generated = 0
        self.turns_left = steps * (len(self.dims) + 1) + len(self.dims)  # bounded: a pattern without a predicted one

    @property
    def done(self) -> bool:
        return self.generated == self.steps

    def next_vector(self, hidden: torch.Tensor) -> tuple[str, torch.Tensor]:
        """The next vector `[S, d]` after the hidden states `[S, h]` of the row's trajectories, and its stream."""
        if self.turns_left == 0:
            raise DataError(f"the rollout pattern {self.pattern} holds no predicted stream.")
        self.turns_left -= 1
        name = next(self.order)
        if self.config.is_condition(name):
            given = self.conditions.get(name)
            if given is None or self.used[name] >= len(given):
                have = 0 if given is None else len(given)
                raise DataError(f"the rollout needs condition vectors of stream '{name}' beyond the {have} given "
                                f"(pass `conditions={{'{name}': array [k, {self.dims[name]}]}}` with enough rows for "
                                f"{self.steps} steps).")
            vector = given[self.used[name]][None].repeat(self.count, 1).to(self.row.vectors.device)
            self.used[name] += 1
        else:
            recent = self.recent.get(name, [])
            if self.config.predict_residual == "ridge":
                previous = _padded_history(torch.stack(recent, dim=1), self.k) if recent else hidden.new_zeros(
                    (self.count, self.k, self.dims[name]), dtype=torch.float32)
                if self.config.frame_conditions:
                    previous = _with_conditions(previous, [self._recent_of(c, dc) for c, dc in
                                                           self.config.frame_conditions], self.k)
                count = len(recent)
            else:
                previous, count = (recent[0] if recent else None), None
            vector = _next_vectors(self.model, hidden, previous, self.sampling, self.generator, name, self.dims[name],
                                   count)
            self.out.setdefault(name, []).append(vector)
            self.generated += 1
        self.recent.setdefault(name, []).insert(0, vector)
        del self.recent[name][self.k:]
        return name, vector

    def _recent_of(self, name: str, d: int) -> torch.Tensor:
        """The last k vectors of stream `name` so far `[S, n, d]` (most recent first; n = 0 when none)."""
        recent = self.recent.get(name)
        if not recent:
            return self.row.vectors.new_zeros((self.count, 0, d), dtype=torch.float32)
        return torch.stack(recent, dim=1)

    def result(self) -> np.ndarray | dict[str, np.ndarray]:
        trajectories = {name: torch.stack(v, dim=1).float().cpu().numpy() for name, v in self.out.items()}  # [S, n, d]
        if not self.sampling:
            trajectories = {name: t[0] for name, t in trajectories.items()}
        return next(iter(trajectories.values())) if len(trajectories) == 1 else trajectories


@torch.no_grad()
def continue_rows(model, rows_features: list[dict[str, Any]], steps: int, sampling: Optional[Sampling] = None,
                  conditions: Optional[dict[str, torch.Tensor]] = None,
                  pattern: Optional[list[str]] = None) -> list[np.ndarray | dict[str, np.ndarray]]:
    """`continue_stream` of each row, as one batch: the rows right-padded in one first pass, then one position per
    row and step (a row that is done feeds nothing). `conditions` and `pattern` apply to every row."""
    layout = _Layout.of(model)
    rows = [_Continuation(model, features, steps, sampling, conditions, pattern, layout) for features in rows_features]
    ids, lengths = _right_padded([row.row.input_ids for row in rows])
    slots = torch.cat([torch.stack([torch.full_like(row.row.positions, b), row.row.positions], dim=1)
                       for b, row in enumerate(rows)])
    vectors = torch.cat([row.row.vectors for row in rows])
    streams = torch.cat([row.row.streams for row in rows])
    embeds = model.embed(ids, vectors, slots, embedding_streams=streams)  # [b, t, h]
    count = rows[0].count
    stream = _Stream(model)
    stream.feed(embeds, lengths)
    stream.repeat(count)
    while not all(row.done for row in rows):
        hidden = stream.last_hidden.view(len(rows), count, -1)  # [rows, S, h]
        segments = []
        for row, row_hidden in zip(rows, hidden):
            if row.done:
                segments.append(embeds.new_zeros((count, 0, embeds.shape[-1])))
                continue
            name, vector = row.next_vector(row_hidden)
            segments.append(model.project(vector, stream=name)[:, None].to(embeds.dtype))  # [S, 1, h]
        if not all(row.done for row in rows):
            stream.feed(*_padded_segments(segments))
    return [row.result() for row in rows]


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
