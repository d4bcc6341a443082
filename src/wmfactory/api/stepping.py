"""A rollout of one row, step by step, for `"stream": true`: the same continuation as `WorldModel.rollout` (the
engine's own `_Continuation` and KV-cached `_Stream`, fed exactly as `continue_rows` feeds a batch of one), but each
predicted vector is handed over as soon as it is made."""

from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from ..model.generation import _Continuation, _Layout, _padded_segments, _right_padded, _Stream
from ..model.world_model import _sampling


@torch.no_grad()
def stepped_rollout(model, row: dict[str, Any], steps: int, context_groups: Optional[int] = None,
                    num_samples: Optional[int] = None, temperature: Optional[float] = None,
                    seed: Optional[int] = None, conditions: Optional[dict[str, Any]] = None,
                    pattern: Optional[list[str]] = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yields `(stream, vector)` for each of the `steps` predicted vectors: `[d]`, or `[S, d]` with `num_samples`."""
    sampling = _sampling(num_samples, temperature, seed)
    given = model._conditions(conditions)
    if pattern is not None:  # the check `rollout` makes
        unknown = [name for name in pattern if name not in model.config.stream_dims]
        if not pattern or unknown or not model.config.multi_stream:
            raise DataError(f"`pattern` {pattern!r}: name streams of this model ({list(model.config.stream_dims)}); "
                            "a model of one stream has no pattern to choose.")
    features = model._rollout_features(row, steps, None, context_groups)
    continuation = _Continuation(model, features, steps, sampling, given, pattern, _Layout.of(model))
    ids, lengths = _right_padded([continuation.row.input_ids])
    positions = continuation.row.positions
    slots = torch.stack([torch.zeros_like(positions), positions], dim=1)
    embeds = model.embed(ids, continuation.row.vectors, slots, embedding_streams=continuation.row.streams)
    stream = _Stream(model)
    stream.feed(embeds, lengths)
    stream.repeat(continuation.count)
    while not continuation.done:
        made = continuation.generated
        name, vector = continuation.next_vector(stream.last_hidden)  # [S, d]
        if continuation.generated > made:  # a predicted vector, not a given condition
            out = vector.float().cpu().numpy()
            yield name, out if sampling else out[0]
        if not continuation.done:
            segment = model.project(vector, stream=name)[:, None].to(embeds.dtype)  # [S, 1, h]
            stream.feed(*_padded_segments([segment]))
