"""Rollouts stepped one position at a time on the inference engine's `Session.stream`, so that the server can batch
rows that ask for different steps, seeds or conditions, hand each row its result at its own last step, stream each
vector as it is made, stop a row whose client went away, and step a batch that arrived later in turn with one still
running. Each row's result equals its `WorldModel.rollout` alone (the same engine, and the same checks first)."""

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..inference import Sampling, Session
from ..inference.row_api import check_pattern, check_steps, checked_conditions, rollout_features, sampling_of


@dataclass
class PreparedRollout:
    """A rollout request, checked and encoded: what `Session.stream` takes for its row."""

    features: dict[str, Any]
    steps: int
    sampling: Optional[Sampling]
    conditions: Optional[dict[str, torch.Tensor]]
    pattern: Optional[list[str]]

    @property
    def count(self) -> int:
        """Trajectories of the row (the rows of one `Session` must draw as many)."""
        return self.sampling.num_samples if self.sampling else 1


def prepare_rollout(model, row: dict[str, Any], steps: int, context_groups: Optional[int] = None,
                    num_samples: Optional[int] = None, temperature: Optional[float] = None,
                    seed: Optional[int] = None, conditions: Optional[dict[str, Any]] = None,
                    pattern: Optional[list[str]] = None, from_last_vector: bool = False) -> PreparedRollout:
    """The checks `WorldModel.rollout` makes (raises `DataError`), and the row encoded."""
    check_steps(steps)
    sampling = sampling_of(num_samples, temperature, seed)
    given = checked_conditions(model, conditions)
    check_pattern(model, pattern)
    features = rollout_features(model, row, steps, None, context_groups, from_last_vector)
    return PreparedRollout(features, steps, sampling, given, pattern)


class Cohort:
    """Rows with the same number of trajectories, stepped together (one `Session`, one KV cache). `step()` advances
    every live row by one position; per row, `on_vector(i, stream, vector)` for each predicted vector (`[d]`, or
    `[S, d]` with samples), then `on_done(i, result)` (what `rollout` returns) or `on_error(i, DataError)`; a row for
    which `stopped(i)` is true ends at its next step without a result."""

    def __init__(self, model, rows: list[PreparedRollout], on_vector: Callable, on_done: Callable,
                 on_error: Callable, stopped: Callable[[int], bool]):
        self.on_vector, self.on_done, self.on_error, self.stopped = on_vector, on_done, on_error, stopped
        session = Session(model, [row.features for row in rows])
        self.steps = session.stream([row.steps for row in rows], conditions=[row.conditions for row in rows],
                                    sampling=[row.sampling for row in rows], pattern=[row.pattern for row in rows],
                                    isolate_errors=True)
        self.live = [True] * len(rows)

    @property
    def done(self) -> bool:
        return not any(self.live)

    def step(self) -> None:
        continuations = next(self.steps)
        for i, continuation in enumerate(continuations):
            if not self.live[i]:
                continue
            if continuation.latest is not None:
                name, vector = continuation.latest
                out = vector.float().cpu().numpy()  # [S, d]
                self.on_vector(i, name, out if continuation.sampling else out[0])
            if continuation.error is not None:
                self.live[i] = False
                self.on_error(i, continuation.error)
            elif continuation.done:
                self.live[i] = False
                self.on_done(i, continuation.result())
            elif self.stopped(i):
                self.live[i] = False
                continuation.stop()
