"""Long tables (one line per series and time stamp) -> registered world-model datasets, and the row layout that
`WorldModel.predict_df` rebuilds from a table's history.

Layout of a row (one window of one series, `context_length + prediction_length` time steps):

    user: "<text>" + "<x><y><p>" * context_length + "<x><y>" * prediction_length
                                             (known covariates `x` [c] before the target `y` [k] of each step, the
                                              past-only covariates `p` [q] after it in the history part; `x` and `p`
                                              when there are any)
    user: "<text>" + "<y>" * steps           (no covariates)

Each time step is one group of one vector per stream: `y` holds the target columns (the predicted stream), `x` the
known covariates (a condition stream: train with `condition_streams: x`), `p` the past-only covariates (a past-only
stream: train with `past_streams: p`). The known covariate of step t comes before its target, so the target of step
t is forecast from everything up to and including step t's known covariates; the past-only covariate of step t is
measured with the target, so it comes after it and informs the steps after. A rollout past the history continues
`x, y, x, y, ...` with the future known covariates given, and leaves `p` out: its future is unknown. The forecast part
of a row (its last `prediction_length` steps) is written the same way, without `p`, so that training reads the steps
after the history as a rollout will. The format has
no way to name a slice of a file, so groups of one vector each need one file per vector:
`<out_dir>/<name>_vectors/<series>/y<t>.safetensors` ([1, k], tensor `embedding`), written once per series and
time step and shared by every window that holds that step. `text_column` describes a series (constant within it) and opens each of its rows.

Windows end at the series' last step and step back by `stride` (default `prediction_length`: the forecast parts, the
last `prediction_length` steps of each window, then tile the series back from its end), and one more window starts at
the series' first step when the stride does not land there, so the newest data is in a window and every step is in
some row; a series shorter than a window is one row of its own length. Each row also holds `series` (the id, as
text) and `timestamps` (its steps, as text)."""

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from ..extras.errors import ConfigError, DataError
from ..extras.logging import get_logger
from .registry import OPENAI_TAGS, write_rows

logger = get_logger(__name__)
TARGET_STREAM, KNOWN_STREAM, PAST_STREAM = "y", "x", "p"


@dataclass
class TableLayout:
    """How a table maps onto rows; saved as `table` in the dataset's dataset_info.json entry."""

    id_column: str
    timestamp_column: str
    targets: list[str]
    known_covariates: list[str] = field(default_factory=list)
    past_covariates: list[str] = field(default_factory=list)
    text_column: Optional[str] = None
    context_length: int = 0
    prediction_length: int = 0
    stride: int = 0
    freq: Optional[str] = None


def require_pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigError("tables need pandas: pip install 'wmfactory[tables]'") from None
    return pandas


def table_series(df, id_column: str, timestamp_column: str, numeric: list[str], freq: Optional[str] = None,
                 what: str = "table", others: tuple = (), may_miss: tuple = ()) -> tuple[dict[Any, Any], Optional[Any]]:
    """Check a long table and split it: ({series id: its lines sorted by time stamp}, the step (a pandas offset, or
    a number for numeric time stamps; None when every series has one line)). One `DataError` line per problem: a
    missing column, a non-numeric or non-finite value, a time stamp twice in a series, steps that are not regular
    (without `freq`) or that skip a step of `freq`. The columns of `may_miss` may hold NaN (missing values, under
    `missing_values: mask`), never infinities."""
    pd = require_pandas()
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}.")
    for column in [id_column, timestamp_column, *numeric, *others]:
        if column not in df.columns:
            raise DataError(f"{what}: column '{column}' not found (columns: {list(map(str, df.columns))}).")
    for column in numeric:
        values = df[column]
        if not pd.api.types.is_numeric_dtype(values):  # booleans are 0 and 1
            raise DataError(f"{what}: column '{column}' must be numeric, got dtype {values.dtype} (encode "
                            "categories as numbers, e.g. with pandas.get_dummies).")
        numbers = values.to_numpy(dtype=np.float64)
        bad = np.isinf(numbers) if column in may_miss else ~np.isfinite(numbers)
        if bad.any():
            at = int(bad.argmax())
            hint = ("" if column in may_miss else "; missing target values need `missing_values=\"mask\"` (and a "
                    "model trained with `missing_values: mask`)")
            raise DataError(f"{what}: column '{column}' has a {'missing or ' if column not in may_miss else ''}"
                            f"infinite value at line {df.index[at]} (id {df[id_column].iloc[at]!r}, time stamp "
                            f"{df[timestamp_column].iloc[at]}){hint}.")
    stamps = df[timestamp_column]
    if not (pd.api.types.is_datetime64_any_dtype(stamps) or pd.api.types.is_integer_dtype(stamps)):
        try:
            stamps = pd.to_datetime(stamps)
        except (ValueError, TypeError):
            raise DataError(f"{what}: column '{timestamp_column}' holds neither dates nor integers "
                            f"(dtype {df[timestamp_column].dtype}).") from None
    table = df.assign(**{timestamp_column: stamps})
    duplicated = table.duplicated([id_column, timestamp_column])
    if duplicated.any():
        at = int(duplicated.to_numpy().argmax())
        raise DataError(f"{what}: id {table[id_column].iloc[at]!r} has the time stamp "
                        f"{table[timestamp_column].iloc[at]} more than once (line {table.index[at]}).")
    series = {key: part.sort_values(timestamp_column) for key, part in table.groupby(id_column, sort=True)}
    return series, series_step(series, timestamp_column, freq, what)


def series_step(series: dict, timestamp_column: str, freq: Optional[str], what: str):
    """The common step of every series' time stamps (checked), from `freq` or found in the data."""
    pd = require_pandas()
    integer = pd.api.types.is_integer_dtype(next(iter(series.values()))[timestamp_column])
    step = None
    if freq is not None:
        try:
            step = int(freq) if integer else pd.tseries.frequencies.to_offset(freq)
        except (ValueError, TypeError):
            raise DataError(f"{what}: `freq` {freq!r} is not a pandas frequency (e.g. 'D', 'MS', 'QS') "
                            f"{'or an integer step' if integer else ''}.") from None
    for key, part in series.items():
        stamps = part[timestamp_column]
        if len(stamps) < 2:
            continue
        if step is None:
            if integer:
                step = int(stamps.iloc[1] - stamps.iloc[0])
            else:
                with warnings.catch_warnings():  # pandas 3 warns that it will return an offset; to_offset takes both
                    warnings.simplefilter("ignore")
                    inferred = pd.infer_freq(stamps) if len(stamps) >= 3 else None
                step = pd.tseries.frequencies.to_offset(inferred) if inferred else None
                if step is None and len(stamps) == 2:
                    step = pd.tseries.frequencies.to_offset(stamps.iloc[1] - stamps.iloc[0])
            if step is None:
                raise DataError(f"{what}: the time stamps of id {key!r} are not evenly spaced; pass `freq` (e.g. "
                                "'D', 'MS', 'QS') if they follow a calendar step.")
        expected = (stamps.iloc[0] + step * np.arange(len(stamps)) if integer
                    else pd.date_range(stamps.iloc[0], periods=len(stamps), freq=step))
        differ = np.asarray(stamps) != np.asarray(expected)
        if differ.any():
            at = int(differ.argmax())
            raise DataError(f"{what}: id {key!r} does not step by {getattr(step, 'freqstr', step)} from "
                            f"{stamps.iloc[at - 1]}: the next time stamp is {stamps.iloc[at]}, expected "
                            f"{expected[at]}{'' if freq else ' (pass `freq` if the steps follow a calendar)'}.")
    return step


def row_conversation(steps: int, with_known: bool, text: Optional[str] = None,
                     with_past: bool = False, future: int = 0) -> list[dict[str, str]]:
    """The messages of a row of `steps` time steps, the last `future` of them without the past-only covariates (as
    a rollout past the history reads them)."""
    unit = (f"<{KNOWN_STREAM}>" if with_known else "") + f"<{TARGET_STREAM}>"
    past = unit + f"<{PAST_STREAM}>" if with_past else unit
    return [{"role": "user", "content": (text or "") + past * (steps - future) + unit * future},
            {"role": "assistant", "content": ""}]


def forecast_steps(steps: int, prediction_length: int) -> int:
    """The steps of a window of `steps` written as a rollout reads them, without past-only covariates: its last
    `prediction_length`, leaving the first step at least (a series shorter than a window keeps one step of history)."""
    return max(0, min(prediction_length, steps - 1))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start indices of the windows of a series of `length` steps: the last ends at the series' end, each earlier
    one `stride` before, and one from 0; a series shorter than `window` is one window from 0."""
    if length <= window:
        return [0]
    return sorted(set(range(length - window, -1, -stride)) | {0})


def series_text(part, text_column: Optional[str], key) -> Optional[str]:
    if text_column is None:
        return None
    texts = part[text_column].dropna().astype(str).unique()
    if len(texts) > 1:
        raise DataError(f"table: column '{text_column}' describes a series and must be the same on every line of it; "
                        f"id {key!r} has {len(texts)} different texts.")
    return f"{texts[0]} " if len(texts) else None


def from_dataframe(df, id_column: str, timestamp_column: str, targets: list[str] | str,
                   known_covariates: Optional[list[str]] = None, past_covariates: Optional[list[str]] = None,
                   text_column: Optional[str] = None, context_length: int = 32, prediction_length: int = 8,
                   out_dir: str = "data/table", name: str = "table", freq: Optional[str] = None,
                   stride: Optional[int] = None, missing_values: str = "refuse") -> str:
    """Write the long table `df` as the dataset `name` in `out_dir` (rows `<name>.jsonl`, vector files under
    `<name>_vectors/`, the entry in `dataset_info.json`, with the layout as `table`). Targets become the stream
    `y` (`[k]` per step, in the order of `targets`), known covariates the condition stream `x` (`[c]` per step),
    past-only covariates the stream `p` (`[q]` per step). Train with `dataset: <name>`, `dataset_dir: <out_dir>`,
    with known covariates `condition_streams: x` and with past-only ones `past_streams: p`. With
    `missing_values="mask"` a target may be NaN (a missing value; train with `missing_values: mask`); covariates
    never. Returns the path of the rows."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    known = list(known_covariates or [])
    past = [past_covariates] if isinstance(past_covariates, str) else list(past_covariates or [])
    for key, value in (("context_length", context_length), ("prediction_length", prediction_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"`{key}` must be a positive integer, got {value!r}.")
    stride = prediction_length if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"`stride` must be a positive integer, got {stride!r}.")
    if not targets:
        raise ConfigError("`targets`: name at least one column to forecast.")
    for (one, first), (two, second) in (((targets, "targets"), (known, "known covariates")),
                                        ((targets, "targets"), (past, "past-only covariates")),
                                        ((known, "known covariates"), (past, "past-only covariates"))):
        overlap = sorted(set(one) & set(two))
        if overlap:
            raise ConfigError(f"columns {overlap} are both {first} and {second}.")
    if missing_values not in ("refuse", "mask"):
        raise ConfigError(f"`missing_values` must be refuse or mask, got {missing_values!r}.")
    series, step = table_series(df, id_column, timestamp_column, targets + known + past, freq,
                                others=(text_column,) if text_column else (),
                                may_miss=tuple(targets) if missing_values == "mask" else ())
    window = context_length + prediction_length
    vectors_dir = f"{name}_vectors"
    rows, short = [], 0
    for number, (key, part) in enumerate(series.items()):
        if len(part) < 2:
            raise DataError(f"table: id {key!r} has one time stamp; a series needs at least two.")
        short += len(part) < window
        files = _write_series(out_dir, f"{vectors_dir}/{number}", part,
                              {KNOWN_STREAM: known, TARGET_STREAM: targets, PAST_STREAM: past}, key, timestamp_column)
        stamps = [_stamp_text(value) for value in part[timestamp_column]]
        text = series_text(part, text_column, key)
        for start in window_starts(len(part), window, stride):
            span = slice(start, start + window)
            steps = len(stamps[span])
            future = forecast_steps(steps, prediction_length) if past else 0
            embeddings = {stream: paths[span] for stream, paths in files.items()}
            if past:  # the forecast part reads as a rollout does: no past-only covariates, their future is unknown
                embeddings[PAST_STREAM] = embeddings[PAST_STREAM][: steps - future]
            rows.append({"messages": row_conversation(steps, bool(known), text, bool(past), future),
                         "embeddings": embeddings, "series": str(key), "timestamps": stamps[span]})
    if short:
        logger.warning(f"{short} of {len(series)} series are shorter than a window ({window} steps): each is one "
                       "row of its own length.")
    layout = TableLayout(id_column, timestamp_column, targets, known, past, text_column, context_length,
                         prediction_length, stride, getattr(step, "freqstr", None if step is None else str(step)))
    entry = {"file_name": f"{name}.jsonl", "formatting": "sharegpt",
             "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": OPENAI_TAGS,
             "table": asdict(layout)}
    path = write_rows(out_dir, name, rows, entry)
    keys = ([f"`condition_streams: {KNOWN_STREAM}`"] if known else []) + ([f"`past_streams: {PAST_STREAM}`"] if past
                                                                        else [])
    logger.info(f"Wrote {len(rows)} rows of {len(series)} series to {path}"
                + (f" (train with {' and '.join(keys)})" if keys else ""))
    return path


def _write_series(out_dir: str, folder: str, part, streams: dict[str, list[str]], key,
                  timestamp_column: str) -> dict[str, list[str]]:
    """One `.safetensors` ([1, d], tensor `embedding`) per time step and stream of `streams` `{stream: columns}` with
    columns -> their paths relative to `out_dir`, per stream."""
    from safetensors.numpy import save_file

    os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    files: dict[str, list[str]] = {}
    for stream, columns in streams.items():
        if not columns:
            continue
        values = part[columns].to_numpy(dtype=np.float32)  # [T, d]
        for t, vector in enumerate(values):
            path = f"{folder}/{stream}{t}.safetensors"
            metadata = {"series": str(key), "timestamp": _stamp_text(part[timestamp_column].iloc[t]),
                        "columns": json.dumps(columns)}
            save_file({"embedding": np.ascontiguousarray(vector[None])}, os.path.join(out_dir, path), metadata)
            files.setdefault(stream, []).append(path)
    return files


def _stamp_text(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
