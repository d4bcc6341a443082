"""Continuing rows past their end: the inference engine's rollouts. Each row's prefix is encoded once; the decoder
then forks it into continuations (samples of the head's distribution, candidate action sequences of a planner, or
both), each with its own condition vectors, and steps them all by the row's stream pattern, one position per
vector, with one KV cache. Rollouts, sampled rollouts and the planner all run here."""

import itertools
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from .decoder import IncrementalDecoder, padded_segments, right_padded
from .rows import Layout, RowTensors, Sampling, next_vectors, padded_history, with_conditions

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


@torch.no_grad()
def continue_rows(model, rows_features: list[dict[str, Any]], steps: int | list[int],
                  sampling: Optional[Sampling] = None,
                  conditions: Optional[dict[str, torch.Tensor] | list[Optional[dict[str, torch.Tensor]]]] = None,
                  pattern: Optional[list[str]] = None) -> list[np.ndarray | dict[str, np.ndarray]]:
    """`continue_stream` of each row, as one batch (`Session`): the rows right-padded in one first pass, then one
    position per row and step (a row that is done feeds nothing). `steps` and `conditions`: one for every row, or
    one per row; `pattern` applies to every row."""
    session = Session(model, rows_features)
    return [c.result() for c in session.run(steps, conditions=conditions, sampling=sampling, pattern=pattern)]


class Continuation:
    """One row being continued after its end by `count` trajectories (forks x samples, fork-major): the streams to
    emit in turn, the last k vectors of each stream `[count, d]`, the condition vectors used so far and the vectors
    generated. A condition stream's vectors are given, `[k, d]` shared by every trajectory or `[forks, k, d]` one
    sequence per fork (a planner's candidates); each sample of a fork reads its fork's."""

    def __init__(self, model, row: RowTensors, steps: int, sampling: Optional[Sampling],
                 conditions: Optional[dict[str, torch.Tensor]], pattern: Optional[list[str]], forks: int = 1):
        self.row = row
        cfg = self.config = model.config
        self.model, self.steps, self.sampling = model, steps, sampling
        samples = sampling.num_samples if sampling else 1
        self.forks, self.count = forks, forks * samples
        self.generator = sampling.generator(row.input_ids.device) if sampling else None
        self.dims = cfg.stream_dims
        self.conditions = {name: self._per_trajectory(name, values, samples)
                           for name, values in (conditions or {}).items()}  # [count, k, d]
        group_streams = [row.stream_of_group(g) for g in sorted(set(row.groups))]
        if not cfg.multi_stream:
            group_streams, pattern = [next(iter(self.dims))] * len(group_streams), None
        self.pattern = pattern or group_streams
        self.order = emission_order(group_streams, pattern)
        self.k = cfg.ridge_history if cfg.predict_residual == "ridge" else 1
        self.recent: dict[str, list[torch.Tensor]] = {}  # the last k vectors of each stream, [count, d], latest first
        for i, name in enumerate(row.stream_names):
            key = name if cfg.multi_stream else group_streams[0]
            self.recent.setdefault(key, []).insert(0, row.vectors[i, : row.dims[i]][None].expand(self.count, -1))
            del self.recent[key][self.k:]
        self.used = {name: 0 for name in self.conditions}
        self.out: dict[str, list[torch.Tensor]] = {}
        self.given: dict[str, list[torch.Tensor]] = {}
        self.generated = 0
        self.turns_left = steps * (len(self.dims) + 1) + len(self.dims)  # bounded: a pattern without a predicted one

    def _per_trajectory(self, name: str, values: torch.Tensor, samples: int) -> torch.Tensor:
        values = values.to(self.row.vectors.device, torch.float32)
        if values.dim() == 2:
            return values[None].expand(self.count, -1, -1)
        if values.shape[0] != self.forks:
            raise DataError(f"`conditions['{name}']` holds {values.shape[0]} sequences for {self.forks} forks.")
        return values.repeat_interleave(samples, dim=0)

    @property
    def done(self) -> bool:
        return self.generated == self.steps

    def next_vector(self, hidden: torch.Tensor) -> tuple[str, torch.Tensor]:
        """The next vector `[count, d]` after the hidden states `[count, h]` of the row's trajectories, and its
        stream."""
        if self.turns_left == 0:
            raise DataError(f"the rollout pattern {self.pattern} holds no predicted stream.")
        self.turns_left -= 1
        name = next(self.order)
        if self.config.is_condition(name):
            given = self.conditions.get(name)
            if given is None or self.used[name] >= given.shape[1]:
                have = 0 if given is None else given.shape[1]
                raise DataError(f"the rollout needs condition vectors of stream '{name}' beyond the {have} given "
                                f"(pass `conditions={{'{name}': array [k, {self.dims[name]}]}}` with enough rows for "
                                f"{self.steps} steps).")
            vector = given[:, self.used[name]]
            self.used[name] += 1
            self.given.setdefault(name, []).append(vector)
        else:
            recent = self.recent.get(name, [])
            if self.config.predict_residual == "ridge":
                previous = padded_history(torch.stack(recent, dim=1), self.k) if recent else hidden.new_zeros(
                    (self.count, self.k, self.dims[name]), dtype=torch.float32)
                if self.config.frame_conditions:
                    previous = with_conditions(previous, [self._recent_of(c, dc) for c, dc in
                                                          self.config.frame_conditions], self.k)
                count = len(recent)
            else:
                previous, count = (recent[0] if recent else None), None
            vector = next_vectors(self.model, hidden, previous, self.sampling, self.generator, name, self.dims[name],
                                  count)
            self.out.setdefault(name, []).append(vector)
            self.generated += 1
        self.recent.setdefault(name, []).insert(0, vector)
        del self.recent[name][self.k:]
        return name, vector

    def _recent_of(self, name: str, d: int) -> torch.Tensor:
        """The last k vectors of stream `name` so far `[count, n, d]` (most recent first; n = 0 when none)."""
        recent = self.recent.get(name)
        if not recent:
            return self.row.vectors.new_zeros((self.count, 0, d), dtype=torch.float32)
        return torch.stack(recent, dim=1)

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the generated vectors of each predicted stream `{stream: [count, n, d]}`, the condition vectors that were
        fed `{stream: [count, n_c, d_c]}`), on the model's device, data units."""
        return ({name: torch.stack(v, dim=1).float() for name, v in self.out.items()},
                {name: torch.stack(v, dim=1).float() for name, v in self.given.items()})

    def result(self) -> np.ndarray | dict[str, np.ndarray]:
        trajectories = {name: t.cpu().numpy() for name, t in self.tensors()[0].items()}  # [count, n, d]
        if not self.sampling:
            trajectories = {name: t[0] for name, t in trajectories.items()}
        return next(iter(trajectories.values())) if len(trajectories) == 1 else trajectories


class Session:
    """The inference engine: the prefixes of `rows_features` (the rows, right-padded) encoded once with the KV
    cache, then continued by `run` any number of times, each run forking every row into `forks x num_samples`
    continuations with their own condition vectors. Runs leave the encoded prefixes as they are."""

    def __init__(self, model, rows_features: list[dict[str, Any]]):
        self.model = model
        layout = Layout.of(model)
        self.rows = [RowTensors(model, features, layout) for features in rows_features]
        ids, lengths = right_padded([row.input_ids for row in self.rows])
        slots = torch.cat([torch.stack([torch.full_like(row.positions, b), row.positions], dim=1)
                           for b, row in enumerate(self.rows)])
        vectors = torch.cat([row.vectors for row in self.rows])
        streams = torch.cat([row.streams for row in self.rows])
        embeds = model.embed(ids, vectors, slots, embedding_streams=streams)  # [b, t, h]
        self.dtype = embeds.dtype
        self.prefix = IncrementalDecoder(model)
        self.prefix.feed(embeds, lengths)

    @torch.no_grad()
    def run(self, steps: int | list[int], forks: int = 1, conditions=None, sampling: Optional[Sampling] = None,
            pattern: Optional[list[str]] = None) -> list[Continuation]:
        """Continue every row for `steps` predicted vectors (one count, or one per row) -> one finished
        `Continuation` per row. `conditions`: `{stream: [k, d] or [forks, k, d]}` for every row, or a list of them,
        one per row."""
        rows: list[Continuation] = []
        for rows in self.stream(steps, forks, conditions, sampling, pattern):
            pass
        return rows

    @torch.no_grad()
    def stream(self, steps: int | list[int], forks: int = 1, conditions=None, sampling: Optional[Sampling] = None,
               pattern: Optional[list[str]] = None) -> Iterator[list[Continuation]]:
        """`run`, yielding the rows' continuations after every step (a server sends each new vector as it is made;
        a row that is done stays as it is). The last yield holds every row finished."""
        count_rows = len(self.rows)
        steps = [steps] * count_rows if isinstance(steps, int) else list(steps)
        conditions = conditions if isinstance(conditions, list) else [conditions] * count_rows
        rows = [Continuation(self.model, row, n, sampling, given, pattern, forks)
                for row, n, given in zip(self.rows, steps, conditions)]
        count = rows[0].count
        decoder = self.prefix.copy()
        decoder.fork(count)
        width = decoder.last_hidden.shape[-1]
        while not all(row.done for row in rows):
            hidden = decoder.last_hidden.view(count_rows, count, -1)  # [rows, count, h]
            segments = []
            for row, row_hidden in zip(rows, hidden):
                if row.done:
                    segments.append(hidden.new_zeros((count, 0, width), dtype=self.dtype))
                    continue
                name, vector = row.next_vector(row_hidden)
                segments.append(self.model.project(vector, stream=name)[:, None].to(self.dtype))  # [count, 1, h]
            if not all(row.done for row in rows):
                decoder.feed(*padded_segments(segments))
            yield rows
