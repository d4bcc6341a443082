"""Rollouts stepped one position at a time, so that the engine can batch rows that ask for different numbers of
steps, hand each row its result at its own last step, stream each vector as it is made, and interleave a batch
that arrived later with one still running. It is the continuation of `WorldModel.rollout` itself: the engine's
`_Continuation` per row and one KV-cached `_Stream` per batch, fed as `continue_rows` feeds them (rows
right-padded in one first pass, then one position per row and step; a row that is done feeds nothing), so each row's
result equals its rollout alone."""

from typing import Any, Callable, Optional

import torch

from ..extras.errors import DataError
from ..model.generation import _Continuation, _Layout, _padded_segments, _right_padded, _Stream
from ..model.world_model import _sampling


def prepare_rollout(model, row: dict[str, Any], steps: int, context_groups: Optional[int] = None,
                    num_samples: Optional[int] = None, temperature: Optional[float] = None,
                    seed: Optional[int] = None, conditions: Optional[dict[str, Any]] = None,
                    pattern: Optional[list[str]] = None) -> _Continuation:
    """The checks `WorldModel.rollout` makes, then the row's continuation (raises `DataError` for bad input)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DataError(f"`steps` must be a positive integer, got {steps!r}.")
    sampling = _sampling(num_samples, temperature, seed)
    given = model._conditions(conditions)
    if pattern is not None:
        unknown = [name for name in pattern if name not in model.config.stream_dims]
        if not pattern or unknown or not model.config.multi_stream:
            raise DataError(f"`pattern` {pattern!r}: name streams of this model ({list(model.config.stream_dims)}); "
                            "a model of one stream has no pattern to choose.")
    features = model._rollout_features(row, steps, None, context_groups)
    return _Continuation(model, features, steps, sampling, given, pattern, _Layout.of(model))


class Cohort:
    """Rows (continuations with the same number of trajectories each) stepped together. `step()` advances every
    live row by one position; per row, `on_vector(i, stream, vector)` for each predicted vector (`[d]`, or `[S, d]`
    with samples), then `on_done(i, result)` (what `rollout` returns) or `on_error(i, DataError)`; a row for which
    `stopped(i)` is true is dropped at its next step."""

    def __init__(self, model, rows: list[_Continuation], on_vector: Callable, on_done: Callable,
                 on_error: Callable, stopped: Callable[[int], bool]):
        self.model, self.rows = model, rows
        self.on_vector, self.on_done, self.on_error, self.stopped = on_vector, on_done, on_error, stopped
        self.live = [True] * len(rows)
        self.count = rows[0].count
        with torch.no_grad():
            ids, lengths = _right_padded([row.row.input_ids for row in rows])
            slots = torch.cat([torch.stack([torch.full_like(row.row.positions, b), row.row.positions], dim=1)
                               for b, row in enumerate(rows)])
            vectors = torch.cat([row.row.vectors for row in rows])
            streams = torch.cat([row.row.streams for row in rows])
            self.embeds = model.embed(ids, vectors, slots, embedding_streams=streams)  # [b, t, h]
            self.stream = _Stream(model)
            self.stream.feed(self.embeds, lengths)
            self.stream.repeat(self.count)

    @property
    def done(self) -> bool:
        return not any(self.live)

    @torch.no_grad()
    def step(self) -> None:
        hidden = self.stream.last_hidden.view(len(self.rows), self.count, -1)  # [rows, S, h]
        empty = self.embeds.new_zeros((self.count, 0, self.embeds.shape[-1]))
        segments = []
        for i, (row, row_hidden) in enumerate(zip(self.rows, hidden)):
            if self.live[i] and self.stopped(i):
                self.live[i] = False
            if not self.live[i]:
                segments.append(empty)
                continue
            made = row.generated
            try:
                name, vector = row.next_vector(row_hidden)
            except DataError as err:  # e.g. the given conditions run out: that row fails, the others go on
                self.live[i] = False
                self.on_error(i, err)
                segments.append(empty)
                continue
            if row.generated > made:  # a predicted vector, not a given condition
                out = vector.float().cpu().numpy()
                self.on_vector(i, name, out if row.sampling else out[0])
            if row.done:
                self.live[i] = False
                self.on_done(i, row.result())
                segments.append(empty)
            else:
                segments.append(self.model.project(vector, stream=name)[:, None].to(self.embeds.dtype))  # [S, 1, h]
        if not self.done:
            self.stream.feed(*_padded_segments(segments))

