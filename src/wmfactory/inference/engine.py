"""The inference engine: rows continued step by step with one KV cache. Each row's prefix is encoded once; the
decoder then forks it into continuations (samples of the head's distribution, candidate action sequences of a
planner, or both), each with its own condition vectors, and steps them all, one predicted vector per row and step.
What a continuation feeds next is its script: past the row's end, the row's stream pattern (one position per
vector); inside a known row (`RowScript`, generated groups), the row's own remaining text and vectors. Rollouts,
sampled rollouts, generated groups and the planner all run here."""

import itertools
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from .decoder import IncrementalDecoder, padded_segments, right_padded
from .rows import (GroupPrediction, Layout, RowTensors, Sampling, batch_slots, fill_row_gaps, padded_history,
                   with_conditions)

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


class RowScript:
    """A row generated inside its own layout: the groups before `context_groups` and the groups of condition streams
    are given, the others generated in reading order with the row's text between them. `inputs` `[t, h]`: the row's
    token embeddings with its given vectors projected (a past-only stream's vectors after the context, unknown
    there, left out of the sequence, as rollouts leave them out); `events`: the vectors to generate as (index,
    position in `inputs`), with the `horizons` of their groups (1 for a stream's first generated group); `prefix`:
    the positions before the first of them, which the session encodes."""

    @staticmethod
    def given_vectors(model, row: RowTensors, context_groups: int) -> list[bool]:
        """Which vectors of the row are given: those of the groups before `context_groups` and of condition
        streams."""
        kinds = {name: model.config.stream_kind(name) for name in set(row.stream_names)}
        return [g < context_groups or not kinds[name].predicted for g, name in zip(row.groups, row.stream_names)]

    @classmethod
    def fill_history_gaps(cls, model, rows: list[RowTensors], counts: list[int]) -> None:
        """`missing_values: mask`: the gaps of the rows' given vectors before their first generated one, as the model
        finds them most likely from the row up to there (`fill_row_gaps`, one batch; the rows' `fed`)."""
        fillable, ends = [], []
        for row, count in zip(rows, counts):
            given = cls.given_vectors(model, row, count)
            fillable.append([kept and target for kept, target in zip(given, row.is_target)])
            ends.append(next((p for p, kept in zip(row.positions.tolist(), given) if not kept), len(row.input_ids)))
        fill_row_gaps(model, rows, fillable, ends)

    def __init__(self, model, row: RowTensors, context_groups: int):
        inputs = model.get_input_embeddings()(row.input_ids).clone()  # [t, h]
        kinds = {name: model.config.stream_kind(name) for name in set(row.stream_names)}
        self.given = self.given_vectors(model, row, context_groups)
        dropped = [g >= context_groups and not (kinds[name].predicted or kinds[name].given_in_future)
                   for g, name in zip(row.groups, row.stream_names)]
        self.events = [(i, position) for i, position in enumerate(row.positions.tolist()) if not self.given[i]]
        groups_so_far: dict[str, list[int]] = {}  # the generated groups of each stream, for each event's horizon
        self.horizons = []
        for i, _ in self.events:
            seen = groups_so_far.setdefault(row.stream_names[i], [])
            if row.groups[i] not in seen:
                seen.append(row.groups[i])
            self.horizons.append(len(seen))
        # `missing_values: mask`: the given vectors as filled (`row.fed`, `fill_history_gaps`)
        for name in set(row.stream_names):  # the given vectors of each stream through its projector at once
            index = [i for i, (kept, other, gone) in enumerate(zip(self.given, row.stream_names, dropped))
                     if kept and not gone and other == name]
            if index:
                d = row.dims[index[0]]
                vectors = row.fed[index, :d]
                one_row = torch.zeros((len(index), 2), dtype=torch.long, device=vectors.device)
                fill = model.missing_fill(vectors, one_row, stream=name)
                inputs[row.positions[index]] = model.project(vectors, stream=name, fill=fill).to(inputs.dtype)
        if any(dropped):
            keep = torch.ones(len(inputs), dtype=torch.bool, device=inputs.device)
            keep[row.positions[torch.tensor(dropped, device=row.positions.device)]] = False
            before = torch.cumsum(~keep, 0).tolist()  # positions dropped at or before each position
            inputs = inputs[keep]
            self.events = [(i, position - before[position]) for i, position in self.events]
        if self.events and self.events[0][1] == 0:
            raise DataError("the first generated vector sits at position 0: nothing precedes it to predict it")
        self.inputs = inputs
        self.prefix = inputs[: self.events[0][1] if self.events else 1]  # none: a first position no step reads


class Continuation:
    """One row being continued after its end by `count` trajectories (forks x samples, fork-major): the streams to
    emit in turn, the last k vectors of each stream `[count, d]`, the condition vectors used so far and the vectors
    generated. A condition stream's vectors are given, `[k, d]` shared by every trajectory or `[forks, k, d]` one
    sequence per fork (a planner's candidates); each sample of a fork reads its fork's. With a `script`, the row is
    generated inside its own layout instead (`RowScript`: `steps`, `conditions` and `pattern` unused): its
    trajectories' inputs `[count, t, h]` and vectors `[count, v, W]` take the generated vectors at their places."""

    def __init__(self, model, row: RowTensors, steps: Optional[int], sampling: Optional[Sampling],
                 conditions: Optional[dict[str, torch.Tensor]], pattern: Optional[list[str]], forks: int = 1,
                 script: Optional[RowScript] = None):
        self.row, self.script = row, script
        cfg = self.config = model.config
        self.model, self.sampling = model, sampling
        samples = sampling.num_samples if sampling else 1
        self.forks, self.count = forks, forks * samples
        self.generator = sampling.generator(row.input_ids.device) if sampling else None
        self.dims = cfg.stream_dims
        self.k = cfg.ridge_history if cfg.ridge_frame else 1
        self.recent: dict[str, list[torch.Tensor]] = {}  # the last k vectors of each stream, [count, d], latest first
        self.out: dict[str, list[torch.Tensor]] = {}
        self.given: dict[str, list[torch.Tensor]] = {}
        self.generated = 0
        self.latest: Optional[tuple[str, torch.Tensor]] = None  # the predicted vector of the last step, if any
        self.error: Optional[DataError] = None
        if script is not None:
            self.steps, self.conditions, self.used = len(script.events), {}, {}
            self.inputs = script.inputs[None].repeat(self.count, 1, 1)  # [count, t, h]
            self.vectors = row.fed[None].repeat(self.count, 1, 1)  # [count, v, W]
            self.read = 0  # the row's vectors before index `read` are in `recent`
            return
        self.steps = steps
        self.conditions = {name: self._per_trajectory(name, values, samples)
                           for name, values in (conditions or {}).items()}  # [count, k, d]
        group_streams = [row.stream_of_group(g) for g in sorted(set(row.groups))]  # the model's streams
        pattern = [cfg.model_stream(name) for name in pattern] if pattern else None
        # a stream read in the history only (neither predicted nor given in the future) is left out of the rollout
        kinds = {name: cfg.stream_kind(name) for name in set(group_streams)}
        group_streams = [n for n in group_streams if kinds[n].predicted or kinds[n].given_in_future] or group_streams
        self.pattern = pattern or group_streams
        self.order = emission_order(group_streams, pattern)
        for i, name in enumerate(row.stream_names):
            self._remember(name, row.fed[i, : row.dims[i]][None].expand(self.count, -1))
        self.used = {name: 0 for name in self.conditions}
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
        return self.generated >= self.steps

    def stop(self) -> None:
        """End this continuation at the next step, with what it has made so far."""
        self.steps = self.generated

    def fail(self, error: DataError) -> None:
        self.error = error
        self.stop()

    def next_stream(self) -> str:
        """The stream of the next vector, by the row's pattern (with a script: its next generated vector, the row's
        vectors before it remembered)."""
        if self.script is not None:
            i, row = self.script.events[self.generated][0], self.row
            for j in range(self.read, i):
                self._remember(row.stream_names[j], self.vectors[:, j, : row.dims[j]])
            self.read = i + 1
            return row.stream_names[i]
        if self.turns_left == 0:
            raise DataError(f"the rollout pattern {self.pattern} holds no predicted stream.")
        self.turns_left -= 1
        return next(self.order)

    def is_given(self, name: str) -> bool:
        """Whether the next vector, of stream `name`, is a given condition vector (with a script: never, the row's
        own are in its inputs)."""
        return self.script is None and self.config.stream_kind(name).given_in_future

    def horizon(self, name: str) -> int:
        """The rollout horizon of the next vector of `name` (1 for the first; with a script, its group's)."""
        return self.script.horizons[self.generated] if self.script else len(self.out.get(name, [])) + 1

    def condition_vector(self, name: str) -> torch.Tensor:
        """The next given vector of condition stream `name` `[count, d]`, taken and remembered."""
        given = self.conditions.get(name)
        if given is None or self.used[name] >= given.shape[1]:
            have = 0 if given is None else given.shape[1]
            raise DataError(f"the rollout needs condition vectors of stream '{name}' beyond the {have} given "
                            f"(pass `conditions={{'{name}': array [k, {self.dims[name]}]}}` with enough rows for "
                            f"{self.steps} steps).")
        vector = given[:, self.used[name]]
        self.used[name] += 1
        self.given.setdefault(name, []).append(vector)
        self._remember(name, vector)
        return vector

    def frame_inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head's frame reads before the next vector of `name`, for each trajectory: the previous vector of
        the stream `[count, d]` and whether there is one `[count]`; with a ridge frame the last k vectors `[count,
        k, d (+ the conditions' widths)]` and how many there are `[count]` (as `WorldModel.frame_inputs` lays them
        out for a row)."""
        recent = self.recent.get(name, [])
        device = self.row.vectors.device
        if self.config.ridge_frame:
            previous = padded_history(torch.stack(recent, dim=1), self.k) if recent else torch.zeros(
                (self.count, self.k, self.dims[name]), device=device)
            if self.config.frame_conditions:
                previous = with_conditions(previous, [self._recent_of(c, dc) for c, dc in
                                                      self.config.frame_conditions], self.k)
            return previous, torch.full((self.count,), len(recent), dtype=torch.long, device=device)
        previous = recent[0] if recent else torch.zeros((self.count, self.dims[name]), device=device)
        return previous, torch.full((self.count,), bool(recent), dtype=torch.bool, device=device)

    def add_predicted(self, name: str, vector: torch.Tensor) -> None:
        """Record the predicted vector `[count, d]` of stream `name`."""
        if self.script is not None:
            i = self.script.events[self.generated][0]
            self.vectors[:, i, : self.row.dims[i]] = vector
        self.out.setdefault(name, []).append(vector)
        self.generated += 1
        self.latest = (name, vector)
        self._remember(name, vector)

    def segment(self, projected: torch.Tensor) -> torch.Tensor:
        """The positions to feed after the vector just predicted or given, `projected` `[count, h]` -> `[count, n,
        h]`: itself; with a script, it at its place and the row's text up to the next generated vector (nothing
        after the last)."""
        if self.script is None:
            return projected[:, None]
        events = self.script.events
        position = events[self.generated - 1][1]
        self.inputs[:, position] = projected
        end = events[self.generated][1] if self.generated < len(events) else position
        return self.inputs[:, position:end]

    def _remember(self, name: str, vector: torch.Tensor) -> None:
        self.recent.setdefault(name, []).insert(0, vector)
        del self.recent[name][self.k:]

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

    def result(self) -> np.ndarray | dict[str, np.ndarray] | list[GroupPrediction]:
        """The generated vectors (`tensors` as arrays, `[n, d]` without sampling; one array for one stream); with a
        script, the row's generated groups (`samples` `[S, n, d]` with sampling, `predicted` their mean)."""
        if self.script is not None:
            return self._groups()
        trajectories = {name: t.cpu().numpy() for name, t in self.tensors()[0].items()}  # [count, n, d]
        if not self.sampling:
            trajectories = {name: t[0] for name, t in trajectories.items()}
        return next(iter(trajectories.values())) if len(trajectories) == 1 else trajectories

    def _groups(self) -> list[GroupPrediction]:
        row, out = self.row, []
        horizon: dict[str, int] = {}  # per stream: generated groups so far
        for group in sorted({g for g, kept in zip(row.groups, self.script.given) if not kept}):
            indices = row.group_indices[group]
            drawn = self.vectors[:, indices, : row.dims[indices[0]]]
            name = row.stream_names[indices[0]]
            horizon[name] = horizon.get(name, 0) + 1
            out.append(row.group_prediction(group, drawn.mean(0), horizon=horizon[name],
                                            samples=drawn if self.sampling else None))
        return out


class Session:
    """The inference engine: the prefixes of `rows_features` (the rows, right-padded) encoded once with the KV
    cache, then continued by `run` any number of times, each run forking every row into `forks x num_samples`
    continuations with their own condition vectors. Runs leave the encoded prefixes as they are.

    With `context_groups` (one count, or one per row), the rows are generated inside their own layout instead
    (`RowScript`): the prefix of a row ends before its first generated vector, and a run's continuations follow the
    row's own text and vectors (`steps`, `forks`, `conditions` and `pattern` unused), each ending with the row's
    generated groups as its `result()`."""

    @torch.no_grad()
    def __init__(self, model, rows_features: list[dict[str, Any]], context_groups: Optional[int | list[int]] = None):
        self.model = model
        layout = Layout.of(model)
        self.rows = [RowTensors(model, features, layout) for features in rows_features]
        self.scripts: Optional[list[RowScript]] = None
        if context_groups is None:
            ids, lengths = right_padded([row.input_ids for row in self.rows])
            fill_row_gaps(model, self.rows)  # `missing_values: mask`: the gaps as the model finds them most likely
            vectors = torch.cat([row.fed for row in self.rows])
            streams = torch.cat([row.streams for row in self.rows])
            embeds = model.embed(ids, vectors, batch_slots(self.rows), embedding_streams=streams)  # [b, t, h]
        else:
            counts = [context_groups] * len(self.rows) if isinstance(context_groups, int) else list(context_groups)
            RowScript.fill_history_gaps(model, self.rows, counts)
            self.scripts = [RowScript(model, row, c) for row, c in zip(self.rows, counts)]
            embeds, lengths = right_padded([script.prefix for script in self.scripts])
        self.dtype = embeds.dtype
        self.prefix = IncrementalDecoder(model)
        self.prefix.feed(embeds, lengths)

    @torch.no_grad()
    def run(self, steps: Optional[int | list[int]] = None, forks: int = 1, conditions=None,
            sampling: Optional[Sampling] = None, pattern: Optional[list[str]] = None) -> list[Continuation]:
        """Continue every row for `steps` predicted vectors (one count, or one per row) -> one finished
        `Continuation` per row. `conditions`: `{stream: [k, d] or [forks, k, d]}` for every row, or a list of them,
        one per row."""
        rows: list[Continuation] = []
        for rows in self.stream(steps, forks, conditions, sampling, pattern):
            pass
        return rows

    @torch.no_grad()
    def stream(self, steps: Optional[int | list[int]] = None, forks: int = 1, conditions=None, sampling=None,
               pattern=None, isolate_errors: bool = False) -> Iterator[list[Continuation]]:
        """`run`, yielding the rows' continuations after every step: a server sends each row's `latest` vector as it
        is made, and may `stop()` a row (its client left) or hand a row its result once it is `done`. `steps`,
        `conditions`, `sampling` and `pattern` are one for every row or a list, one per row (the rows' samplings
        must draw the same number of samples; their seeds and temperatures may differ). With `isolate_errors`, a
        row whose continuation fails (its given conditions run out) ends with its `error` and the others go on;
        otherwise the error is raised. The last yield holds every row done."""
        count_rows = len(self.rows)

        def per_row(value, scalar) -> list:
            return list(value) if isinstance(value, list) and not scalar(value) else [value] * count_rows

        steps = per_row(steps, lambda v: False)
        conditions = per_row(conditions, lambda v: False)
        sampling = per_row(sampling, lambda v: False)
        pattern = per_row(pattern, lambda v: all(isinstance(name, str) for name in v))
        scripts = self.scripts or [None] * count_rows
        rows = [Continuation(self.model, row, n, s, given, p, forks, script)
                for row, n, s, given, p, script in zip(self.rows, steps, sampling, conditions, pattern, scripts)]
        count = rows[0].count
        if any(row.count != count for row in rows):
            raise DataError("the rows of one batch must draw the same number of samples.")
        if all(row.done for row in rows):  # nothing to make (a row generated inside its layout may have nothing)
            yield rows
            return
        decoder = self.prefix.copy()
        decoder.fork(count)
        width = decoder.last_hidden.shape[-1]
        while not all(row.done for row in rows):
            hidden = decoder.last_hidden.view(count_rows, count, -1)  # [rows, count, h]
            fed = self._step(rows, hidden, isolate_errors)
            if not all(row.done for row in rows):
                decoder.feed(*self._segments(rows, fed, count, width, decoder.last_hidden))
            yield rows

    def _step(self, rows: list[Continuation], hidden: torch.Tensor, isolate_errors: bool) -> dict[int, tuple]:
        """Every live row's next vector -> {row: (stream, vector [count, d])}. The head's means of one stream are
        computed for all rows that need one at once; draws (each row has its own generator) and heads whose mean is
        itself a Monte-Carlo average (diffusion: it depends on how many vectors it is given) row by row."""
        fed: dict[int, tuple] = {}
        waiting: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            row.latest = None
            if row.done:
                continue
            try:
                name = row.next_stream()
                if row.is_given(name):
                    fed[i] = (name, row.condition_vector(name))
                elif row.sampling is None and self.model.stream_part("prediction_head", name).mean_is_cheap:
                    waiting.setdefault(name, []).append(i)
                else:
                    previous, known = row.frame_inputs(name)
                    vector = (self.model.vectors_from_hidden(hidden[i], previous, known, name)[1]
                              if row.sampling is None else
                              self.model.sample_vectors(hidden[i], previous, known, 1, row.sampling.temperature,
                                                        row.generator, name, horizon=row.horizon(name))[0])
                    row.add_predicted(name, vector)
                    fed[i] = (name, vector)
            except DataError as err:
                if not isolate_errors:
                    raise
                row.fail(err)
        for name, chosen in waiting.items():
            frames = [rows[i].frame_inputs(name) for i in chosen]
            previous = torch.cat([p for p, _ in frames])
            known = torch.cat([k for _, k in frames])
            means = self.model.vectors_from_hidden(hidden[chosen].flatten(0, 1), previous, known, name)[1]
            for i, vector in zip(chosen, means.view(len(chosen), -1, means.shape[-1])):
                rows[i].add_predicted(name, vector)
                fed[i] = (name, vector)
        return fed

    def _segments(self, rows: list[Continuation], fed: dict[int, tuple], count: int, width: int,
                  like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next positions of every row: its fed vector through its stream's projector (one call per stream),
        and with a script the row's text after it (`Continuation.segment`), nothing for a row that fed none -> (`[rows
        * count, n, h]`, lengths)."""
        projected: dict[int, torch.Tensor] = {}
        for name in {name for name, _ in fed.values()}:
            chosen = [i for i, (other, _) in fed.items() if other == name]
            out = self.model.project(torch.cat([fed[i][1] for i in chosen]), stream=name).to(self.dtype)
            for i, part in zip(chosen, out.view(len(chosen), count, -1)):
                projected[i] = rows[i].segment(part)
        empty = like.new_zeros((count, 0, width), dtype=self.dtype)
        return padded_segments([projected.get(i, empty) for i in range(len(self.rows))])
