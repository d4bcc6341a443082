"""What the Explore tab computes: a row's true vectors per stream, the model's rollout from a context length
(factual: the row's own future conditions; counterfactual: edited ones), as panels to draw and a table of
numbers."""

import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..extras.errors import DataError
from ..inference.rows import stream_sequence, vector_stream

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class StreamVectors:
    """One stream of a row: its vectors before the rollout starts `[c, d]` and after `[f, d]`."""

    context: np.ndarray
    future: np.ndarray


def parse_row(pasted: str, dataset: Optional[str], index: Optional[float]):
    """The row to explore: pasted JSON (a row in the dataset format) or `(dataset, index)`."""
    if pasted and pasted.strip():
        try:
            row = json.loads(pasted)
        except ValueError as err:
            raise DataError(f"the pasted row is not JSON: {err}") from None
        if not isinstance(row, dict):
            raise DataError("the pasted row must be a JSON object with `messages` and `embeddings`.")
        return row
    if not dataset:
        raise DataError("pick a dataset and a row index, or paste a row.")
    if index is None or float(index) != int(index) or int(index) < 0:
        raise DataError(f"the row index must be a whole number >= 0, got {index}.")
    return (dataset, int(index))


def row_streams(model, features: dict[str, Any], context_groups: int) -> dict[str, StreamVectors]:
    """Each stream's vectors of an encoded row, split at group `context_groups` (as `rollout` cuts the row)."""
    config = model.config
    dims = config.stream_dims
    names = [config.model_stream(name) for name in stream_sequence(features)]
    vectors = vector_stream(features)
    groups = list(features["embedding_groups"])
    out = {}
    for name, d in dims.items():
        mine = [i for i, n in enumerate(names) if n == name]
        before = [i for i in mine if groups[i] < context_groups]
        after = [i for i in mine if groups[i] >= context_groups]
        out[name] = StreamVectors(vectors[before][:, :d].reshape(len(before), d),
                                  vectors[after][:, :d].reshape(len(after), d))
    return out


def condition_table(model, streams: dict[str, StreamVectors]) -> pd.DataFrame:
    """The row's future condition vectors as an editable table: `stream`, `k` (order of use), one column per
    dimension (blank past a stream's own dimension)."""
    conditions = model.config.given_streams
    width = max([model.config.stream_dims[name] for name in conditions], default=0)
    rows = []
    for name in conditions:
        for k, vector in enumerate(streams[name].future):
            rows.append({"stream": name, "k": k, **{str(j): float(vector[j]) if j < len(vector) else None
                                                    for j in range(width)}})
    return pd.DataFrame(rows, columns=["stream", "k"] + [str(j) for j in range(width)])


def conditions_from_table(model, table: Optional[pd.DataFrame]) -> dict[str, np.ndarray]:
    """The edited table -> `{stream: [k, d]}` in the order of `k`."""
    if table is None or len(table) == 0:
        return {}
    if "stream" not in table.columns:
        raise DataError("the conditions table needs its `stream` column.")
    out = {}
    for name, part in table.groupby(table["stream"].astype(str), sort=False):
        if name not in model.config.stream_dims or not model.config.is_given(name):
            raise DataError(f"the conditions table names stream '{name}', which is not a condition stream of this "
                            "model.")
        d = model.config.stream_dims[name]
        part = part.sort_values("k", key=lambda k: pd.to_numeric(k, errors="coerce")) if "k" in part else part
        try:
            values = part[[str(j) for j in range(d)]].apply(pd.to_numeric, errors="raise").to_numpy(np.float32, copy=True)
        except (KeyError, ValueError, TypeError):
            raise DataError(f"the conditions of stream '{name}' need {d} numbers per row (columns 0 to "
                            f"{d - 1}).") from None
        if not np.isfinite(values).all():
            raise DataError(f"the conditions of stream '{name}' hold an empty or non-finite cell.")
        out[name] = values
    return out


def as_streams(model, result) -> dict[str, np.ndarray]:
    """A rollout's result as `{stream: [n, d]}` or `{stream: [S, n, d]}`."""
    if isinstance(result, dict):
        return result
    return {model.config.predicted_streams[0]: result}


def rollout_numbers(truth: dict[str, StreamVectors], factual: dict[str, np.ndarray],
                    counterfactual: Optional[dict[str, np.ndarray]], sampled: bool) -> pd.DataFrame:
    """One row per (stream, step, dimension): the true value (when the row has it), the factual rollout and the
    counterfactual one; with samples, their mean and quantiles."""
    rows = []
    for name, values in factual.items():
        future = truth[name].future
        steps = values.shape[-2]
        for step in range(steps):
            for j in range(values.shape[-1]):
                row = {"stream": name, "step": step + 1, "dim": j,
                       "true": float(future[step, j]) if step < len(future) else None}
                for label, result in (("factual", factual), ("counterfactual", counterfactual)):
                    if result is None:
                        continue
                    if sampled:
                        draws = result[name][:, step, j]
                        row[f"{label}_mean"] = float(draws.mean())
                        row.update({f"{label}_q{int(q * 100):02d}": float(v)
                                    for q, v in zip(QUANTILES, np.quantile(draws, QUANTILES))})
                    else:
                        row[label] = float(result[name][step, j])
                rows.append(row)
    return pd.DataFrame(rows)


def panels(truth: dict[str, StreamVectors], factual: dict[str, np.ndarray],
           counterfactual: Optional[dict[str, np.ndarray]], sampled: bool, most: int = 12) -> list[dict[str, Any]]:
    """The drawing of `figures.rollout_figure`: a panel per dimension of each predicted stream (the first `most`)."""
    out = []
    for name, values in factual.items():
        for j in range(values.shape[-1]):
            if len(out) == most:
                return out
            panel = {"title": f"stream {name}, dimension {j}", "context": truth[name].context[:, j],
                     "future": truth[name].future[:, j], "start": len(truth[name].context)}
            for label, result in (("factual", factual), ("counterfactual", counterfactual)):
                if result is not None:
                    panel[label] = {"samples": result[name][:, :, j]} if sampled else {"mean": result[name][:, j]}
            out.append(panel)
    return out


def neighbour_table(model, generated: dict[str, np.ndarray], bank: str, top_k: int, sampled: bool) -> pd.DataFrame:
    """The `top_k` items of the bank nearest to each generated vector (the samples' mean with a fan)."""
    rows = []
    for name, values in generated.items():
        vectors = values.mean(axis=0) if sampled else values
        for step, found in enumerate(model.nearest(vectors, bank, k=int(top_k))):
            for rank, item in enumerate(found, start=1):
                rows.append({"stream": name, "step": step + 1, "rank": rank, "id": item.get("id"),
                             "score": item.get("score"), "item": item.get("text", item.get("path"))})
    return pd.DataFrame(rows)
