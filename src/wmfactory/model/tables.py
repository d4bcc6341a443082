"""Forecasts as a long table, as Chronos-2's `predict_df` gives them: one line per series, future time stamp and
target column, with the `mean` and one column per quantile level (named by the level, `"0.1"`, ...).

    history table --(layout of data/tables.py)--> row + one group after it
      --rollout(context_groups = the history's groups, conditions = future known covariates)--> mean [H, k]
      --rollout(num_samples = S)--> draws [S, H, k] --np.quantile over S--> quantiles [Q, H, k]
"""

from typing import Any, Optional, Sequence

import numpy as np

from ..data.tables import KNOWN_STREAM, PAST_STREAM, TARGET_STREAM, require_pandas, row_conversation, table_series
from ..extras.errors import DataError

DEFAULT_QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def check_quantile_levels(levels: Sequence[float]) -> list[float]:
    levels = [float(level) for level in levels]
    if any(not 0 < level < 1 for level in levels) or len(set(levels)) != len(levels):
        raise DataError(f"`quantile_levels` must be distinct numbers strictly between 0 and 1, got {levels}.")
    return sorted(levels)


def sample_quantiles(samples: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Draws `[S, ...]` -> quantiles `[Q, ...]` over the draws (linear interpolation between order statistics, so
    non-decreasing in the level)."""
    return np.quantile(np.asarray(samples, dtype=np.float64), list(levels), axis=0).astype(np.float32)


def history_row(targets: np.ndarray, known: Optional[np.ndarray] = None, next_known: Optional[np.ndarray] = None,
                past: Optional[np.ndarray] = None) -> tuple[dict[str, Any], int]:
    """The row of a history (`targets [T, k]`, `known [T, c]` and `past [T, q]` covariates) in the layout of
    `from_dataframe`, and the number of its history groups. One more step follows the history (the first future
    covariate `next_known [c]`, or the last values again): `rollout(context_groups=...)` cuts the row right after the
    history's last vector and before the text that ends the turn, which a rollout after the end of the row would read
    first and which the model never saw between two steps. That step's values are cut away with it."""
    steps = len(targets)
    embeddings = {TARGET_STREAM: [vector for vector in targets] + [targets[-1]]}
    if known is not None:
        embeddings[KNOWN_STREAM] = [vector for vector in known] + [next_known]
    if past is not None:
        embeddings[PAST_STREAM] = [vector for vector in past] + [past[-1]]
    row = {"messages": row_conversation(steps + 1, known is not None, with_past=past is not None),
           "embeddings": embeddings}
    return row, steps * len(embeddings)


def predict_df(model, df, future_df=None, prediction_length: Optional[int] = None,
               quantile_levels: Sequence[float] = DEFAULT_QUANTILE_LEVELS, num_samples: int = 100,
               id_column: str = "item_id", timestamp_column: str = "timestamp", target: str | list[str] = "target",
               known_covariates: Optional[list[str]] = None, past_covariates: Optional[list[str]] = None,
               context_length: Optional[int] = None,
               freq: Optional[str] = None, seed: int = 0, temperature: Optional[float] = None):
    """Forecast every series of the long table `df` `prediction_length` steps past its end. `future_df` holds the
    known covariates of those steps (its columns other than the id, the time stamp, the targets and
    `past_covariates`, unless `known_covariates` names them, in the order the model was trained with).
    `past_covariates`: the columns of `df` the model reads as past-only covariates (stream `p`, `past_streams: p`),
    in the order it was trained with; only their history is read. Without `future_df` the future time stamps
    continue each series by its step (`freq`, or the one found in `df`). `context_length` keeps the last steps of
    each history (default: all; pass the one the rows were written with). `mean` is the head's mean rollout
    (`model.rollout` without draws); the quantiles are those of `num_samples` sampled trajectories (`seed`,
    `temperature`). Returns a pandas DataFrame: `id_column`, `timestamp_column`, `target_name`, `mean`, then one
    column per level (`"0.1"`, ...). Each series is rolled out on its own (its future covariates are its own)."""
    pd = require_pandas()
    targets = [target] if isinstance(target, str) else list(target)
    levels = check_quantile_levels(quantile_levels)
    if levels and (isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1):
        raise DataError(f"`num_samples` must be a positive integer for quantiles, got {num_samples!r}.")
    past = [past_covariates] if isinstance(past_covariates, str) else list(past_covariates or [])
    if known_covariates is None:
        known_covariates = ([] if future_df is None else
                            [c for c in future_df.columns if c not in (id_column, timestamp_column, *targets, *past)])
    known = list(known_covariates)
    _check_streams(model.config, targets, known, past)
    series, step = table_series(df, id_column, timestamp_column, targets + known + past, freq, what="df",
                                may_miss=tuple(targets) if model.config.missing_values == "mask" else ())
    future = _future(series, step, future_df, id_column, timestamp_column, known, prediction_length, freq)
    lines = []
    for key, part in series.items():
        stamps, future_known = future[key]
        history = part if context_length is None else part.iloc[-context_length:]
        y = history[targets].to_numpy(dtype=np.float32)
        x = history[known].to_numpy(dtype=np.float32) if known else None
        p = history[past].to_numpy(dtype=np.float32) if past else None
        row, groups = history_row(y, x, future_known[0] if known else None, p)
        conditions = {KNOWN_STREAM: future_known} if known else None
        horizon = len(stamps)
        mean = np.asarray(model.rollout(row, horizon, context_groups=groups, conditions=conditions))  # [H, k]
        quantiles = None
        if levels:
            draws = model.rollout(row, horizon, context_groups=groups, conditions=conditions,
                                  num_samples=num_samples, seed=seed, temperature=temperature)  # [S, H, k]
            quantiles = sample_quantiles(draws, levels)  # [Q, H, k]
        for h, stamp in enumerate(stamps):
            for j, name in enumerate(targets):
                line = {id_column: key, timestamp_column: stamp, "target_name": name, "mean": float(mean[h, j])}
                if quantiles is not None:
                    line.update({str(level): float(quantiles[q, h, j]) for q, level in enumerate(levels)})
                lines.append(line)
    columns = [id_column, timestamp_column, "target_name", "mean"] + [str(level) for level in levels]
    return pd.DataFrame(lines, columns=columns)


def _check_streams(config, targets: list[str], known: list[str], past: list[str]) -> None:
    """The table's columns against the model's streams (`y` of k numbers; with known covariates, the condition
    stream `x` of c numbers; with past-only covariates, the past-only stream `p` of q numbers)."""
    dims = config.stream_dims
    if config.sole_stream is not None:  # the targets, whatever its stream is called (`config.model_stream`)
        if known or past:
            raise DataError(f"the model has one stream and reads no covariates, but {known + past} were given (in "
                            "`future_df`, `known_covariates` or `past_covariates`).")
        if config.embedding_dim != len(targets):
            raise DataError(f"the model forecasts vectors of {config.embedding_dim} numbers, but {len(targets)} "
                            f"target column(s) {targets} were given.")
        return
    if (TARGET_STREAM not in dims or (set(dims) - {TARGET_STREAM, KNOWN_STREAM, PAST_STREAM})
            or (KNOWN_STREAM in dims and not config.is_given(KNOWN_STREAM))
            or (PAST_STREAM in dims and config.stream_kind(PAST_STREAM).name != "past")):
        raise DataError(f"the model's streams {list(dims)} are not a table's (`{TARGET_STREAM}`, the condition stream "
                        f"`{KNOWN_STREAM}` and the past-only stream `{PAST_STREAM}`): train it on rows written by "
                        f"`from_dataframe`, with `condition_streams: {KNOWN_STREAM}` and `past_streams: "
                        f"{PAST_STREAM}` as they apply.")
    if dims[TARGET_STREAM] != len(targets):
        raise DataError(f"the model forecasts {dims[TARGET_STREAM]} target column(s), but {len(targets)} were given: "
                        f"{targets}.")
    if dims.get(KNOWN_STREAM, 0) != len(known):
        raise DataError(f"the model reads {dims.get(KNOWN_STREAM, 0)} known covariate(s) (stream `{KNOWN_STREAM}`), "
                        f"but {len(known)} were given {known}: pass `future_df` with their future values.")
    if dims.get(PAST_STREAM, 0) != len(past):
        raise DataError(f"the model reads {dims.get(PAST_STREAM, 0)} past-only covariate(s) (stream `{PAST_STREAM}`), "
                        f"but {len(past)} were given {past}: name the columns of df in `past_covariates`.")


def _future(series: dict, step, future_df, id_column: str, timestamp_column: str, known: list[str],
            prediction_length: Optional[int], freq: Optional[str]) -> dict[Any, tuple[list, np.ndarray]]:
    """{series id: (the future time stamps [H], the known covariates of those steps [H, c])}."""
    pd = require_pandas()
    if future_df is None:
        if known:
            raise DataError(f"known covariates {known} need `future_df` with their values for the forecast steps.")
        if not isinstance(prediction_length, int) or isinstance(prediction_length, bool) or prediction_length < 1:
            raise DataError(f"`prediction_length` must be a positive integer, got {prediction_length!r}.")
        if step is None:
            raise DataError("df: every series has one time stamp, so their step is unknown: pass `freq`.")
        out = {}
        for key, part in series.items():
            last = part[timestamp_column].iloc[-1]
            stamps = (last + step * np.arange(1, prediction_length + 1) if isinstance(step, int)
                      else pd.date_range(last, periods=prediction_length + 1, freq=step)[1:])
            out[key] = (list(stamps), np.zeros((prediction_length, 0), dtype=np.float32))
        return out
    if freq is None and step is not None:  # the future steps as the history's
        freq = str(step) if isinstance(step, int) else step.freqstr
    upcoming, _ = table_series(future_df, id_column, timestamp_column, known, freq, what="future_df")
    out = {}
    for key, part in series.items():
        if key not in upcoming:
            raise DataError(f"future_df: id {key!r} of df has no line in future_df.")
        lines = upcoming[key]
        last = part[timestamp_column].iloc[-1]
        lines = lines[lines[timestamp_column] > last]
        length = len(lines) if prediction_length is None else prediction_length
        if length < 1 or len(lines) < length:
            raise DataError(f"future_df: id {key!r} has {len(lines)} time stamp(s) after the end of df ({last}); "
                            f"{length} are needed (`prediction_length`).")
        lines = lines.iloc[:length]
        first = lines[timestamp_column].iloc[0]
        expected = (last + step if isinstance(step, int) else pd.date_range(last, periods=2, freq=step)[1]
                    ) if step is not None else first
        if first != expected:
            raise DataError(f"future_df: id {key!r} starts at {first}, but the step after df's last time stamp "
                            f"{last} is {expected}.")
        out[key] = (list(lines[timestamp_column]), np.array(lines[known], dtype=np.float32))  # a writable copy
    return out
