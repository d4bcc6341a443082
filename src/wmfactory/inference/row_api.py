"""The row-level API of a world model (`WorldModel.rollout`, `predict_next`, `nearest`): rows in the dataset format
are checked and encoded with the model's tokenizer and template, then run by the inference engine."""

import math
import os
from typing import Any, Optional, Union

import numpy as np
import torch

from ..extras.errors import DataError
from ..hparams.inference_args import MAX_SAMPLES
from .engine import continue_rows
from .generation import teacher_forced
from .history import LongRows
from .rows import Sampling, context_features, through_last_vector

Row = Union[dict[str, Any], tuple[str, int]]  # a row in the dataset format, or (dataset name, row index)


def rollout(model, row: Row | list[Row], steps: int, dataset_dir: Optional[str] = None,
            context_groups: Optional[int] = None, num_samples: Optional[int] = None,
            temperature: Optional[float] = None, seed: Optional[int] = None,
            conditions: Optional[dict[str, Any]] = None, pattern: Optional[list[str]] = None,
            from_last_vector: bool = False,
            context_length: Optional[int] = None) -> np.ndarray | dict[str, np.ndarray] | list:
    """Continue the latent stream after the end of `row` (or after its first `context_groups` groups) for `steps`
    vectors, feeding each prediction back through the projector (KV-cached). Returns `[steps, d]`, the head's mean
    at each step; with `num_samples` S, `[S, steps, d]`: S trajectories, each feeding back its own draws from the
    head's distribution (`temperature` scales the spread, default the calibrated one of each horizon band;
    `seed` makes them reproducible), computed as one batch. `row`: a dict in the dataset format, or
    `(dataset_name, row_index)`.

    Condition streams (`condition_streams`, e.g. actions): `conditions={"a": array [k, d_a]}` gives their vectors,
    taken in turn wherever the stream pattern calls for one; the pattern is the row's own (s, a, s, a, ... continues
    a, s, a, s, ...) or `pattern` (e.g. `["a", "s"]`, repeated). `steps` counts the predicted vectors; with several
    predicted streams the result is a dict `{stream: array}`. `from_last_vector`: continue right after the row's
    last vector, leaving out the text after it (for a live history whose next vector comes at once, as in the
    training rows; the default continues after the whole row).

    A list of rows runs as one batch (right-padded, one KV cache) and gives a list, one result per row, each equal to
    that row's rollout alone (the draws too: each row draws with its own generator seeded by `seed`).

    Long histories: `context_length` keeps at most the last that many groups of the history (after `context_groups`);
    a history that does not fit in the model's positions with the `steps` after it is cut to its last groups that do
    (`inference.history`), with one warning per call."""
    check_steps(steps)
    sampling = sampling_of(num_samples, temperature, seed)
    given = checked_conditions(model, conditions)
    check_pattern(model, pattern)
    rows = row if isinstance(row, list) else [row]
    long_rows = LongRows(model, context_length)
    batch = [rollout_features(model, one, steps, dataset_dir, context_groups, from_last_vector, long_rows)
             for one in rows]
    long_rows.warn()
    results = continue_rows(model, batch, steps, sampling, given, pattern) if batch else []
    return results if isinstance(row, list) else results[0]


def check_steps(steps: Any, name: str = "steps") -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DataError(f"`{name}` must be a positive integer, got {steps!r}.")


def check_pattern(model, pattern: Optional[list[str]]) -> None:
    if pattern is None:
        return
    unknown = [name for name in pattern if name not in model.config.stream_dims]
    if not pattern or unknown or model.config.sole_stream is not None:
        raise DataError(f"`pattern` {pattern!r}: name streams of this model ({list(model.config.stream_dims)}); "
                        "a model of one stream has no pattern to choose.")


def rollout_features(model, row: Row, steps: int, dataset_dir: Optional[str], context_groups: Optional[int],
                     from_last_vector: bool = False, long_rows: Optional[LongRows] = None) -> dict[str, Any]:
    """The features of `row` (cut after `context_groups` groups, or right after its last vector) for a continuation
    of `steps` more positions, fitted into the model's positions by `long_rows` (without: checked against them)."""
    features = model.encode_row(row, dataset_dir)
    if context_groups is not None:
        features = context_features(features, context_groups)
    if from_last_vector:
        features = through_last_vector(features)
    if not features["embedding_groups"]:
        raise DataError("the row holds no embedding vector (before `context_groups`): there is no stream to "
                        "continue.")
    if long_rows is None:
        check_positions(model, features, steps)
        return features
    return long_rows.fit(features, steps)[0]


def check_positions(model, features: dict[str, Any], steps: int, what: str = "a rollout") -> None:
    """A continuation of `steps` positions after the row must fit in the model's positions."""
    limit = getattr(model.config.text_config.get_text_config(), "max_position_embeddings", None)
    length = len(features["input_ids"])
    if limit and length + steps > limit:
        raise DataError(f"{what} of {steps} vectors after this row ({length} positions) needs {length + steps} "
                        f"positions; the model has {limit}.")


def checked_conditions(model, conditions: Optional[dict[str, Any]]) -> Optional[dict[str, torch.Tensor]]:
    """`{stream: array-like [k, d]}` checked against the model's condition streams -> float32 tensors."""
    if not conditions:
        return None
    if not isinstance(conditions, dict):
        raise DataError(f"`conditions` must be a dict {{stream: array [k, d]}}, got {type(conditions).__name__}.")
    cfg = model.config
    out = {}
    for name, values in conditions.items():
        if name not in cfg.stream_dims or not cfg.is_given(name):
            raise DataError(f"`conditions['{name}']`: '{name}' is not a condition stream of this model (its "
                            f"condition streams: {cfg.given_streams}).")
        try:
            array = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"`conditions['{name}']` must be numbers of shape [k, {cfg.stream_dims[name]}].") from None
        d = cfg.stream_dims[name]
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != d or not np.isfinite(array).all():
            raise DataError(f"`conditions['{name}']` must be finite numbers of shape [k, {d}], got shape "
                            f"{list(array.shape)}.")
        out[name] = torch.from_numpy(array)
    return out


def predict_next(model, row: Row, dataset_dir: Optional[str] = None, num_samples: Optional[int] = None,
                 temperature: Optional[float] = None, seed: Optional[int] = None,
                 context_length: Optional[int] = None) -> list:
    """Teacher-forced predictions for every target group of `row` (a list of `GroupPrediction`: `predicted` `[n, d]`,
    the head's mean; with `num_samples`, `samples` `[S, n, d]` too). `context_length` keeps at most the row's last
    that many groups; a row longer than the model's positions is cut to its last groups that fit, with a warning
    (the groups cut away are not predicted; `group` counts the kept groups, `occurrence` is the row's own)."""
    sampling = sampling_of(num_samples, temperature, seed)
    long_rows = LongRows(model, context_length, what="teacher-forced prediction")
    features = long_rows.fit(model.encode_row(row, dataset_dir))[0]
    long_rows.warn()
    return teacher_forced(model, features, sampling)


def nearest(vectors, bank, k: int = 5) -> list[list[dict[str, Any]]] | tuple[np.ndarray, np.ndarray]:
    """Decoding by retrieval: the k items of `bank` most cosine-similar to each predicted vector `[q, d]`. `bank`: the
    output folder of `wmfactory encode` (or a loaded `Bank`) -> per vector, `{"id", "score", "text" or "path"}` best
    first; or a matrix `[b, d]` -> `(indices [q, k], scores [q, k])`."""
    from ..encode.retrieval import Bank, load_bank
    from ..encode.retrieval import nearest as nearest_in_matrix

    if isinstance(bank, (str, os.PathLike)):
        bank = load_bank(str(bank))
    if isinstance(bank, Bank):
        return bank.neighbours(vectors, k)
    return nearest_in_matrix(vectors, bank, k)


def sampling_of(num_samples: Optional[int], temperature: Optional[float], seed: Optional[int]) -> Optional[Sampling]:
    """The sampling that `num_samples`, `temperature` and `seed` ask for (None: the head's mean), checked."""
    if num_samples is None:
        return None
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
        raise DataError(f"`num_samples` must be a positive integer (at most {MAX_SAMPLES}), got {num_samples!r}.")
    if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
        raise DataError(f"`temperature` must be a positive finite number, got {temperature!r}.")
    return Sampling(num_samples, temperature, seed)
