"""Held-out rows that do not leak: where rows are windows of time series, the held-out ones are the latest.

A row that holds `series` (an id) and `timestamps` (its steps, as `from_dataframe` writes them) is a window of one
series. Holding out random windows of such rows leaks: with overlapping windows (`stride` below the window) every
held-out value is also a training value of a neighbouring window, and the choice made on them (the checkpoint, the
sampling temperature) is a choice made on training data. So when every row carries both columns, `val_size` and
the calibration slice hold out each series' latest windows (as many per series, in proportion to its windows, as
the split asks for in all), the model trains on the series' other windows, and a held-out window scores only its
steps after the last step of those: its earlier steps are given as history and are no target (`mask_seen_steps`),
as a forecast made at the end of the training data is scored. Rows without the two columns are split as before (at
random for `val_size`, every tenth row for calibration)."""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..extras.errors import DataError
from .streams import stream_of

SERIES, TIMESTAMPS = "series", "timestamps"


@dataclass
class TimeSplit:
    train: list[int]  # row indices the model trains on
    held: list[int]  # row indices held out: the latest windows of each series
    seen: list[int]  # per held row: how many of its first steps are in training windows too (history, not scored)
    series: int  # how many series hold out a window
    unseen: int  # the most steps a held row scores

    def describe(self, total: int) -> str:
        return (f"{len(self.held)} of {total} rows held out: the latest windows of {self.series} series (rows are "
                f"windows of time series: they hold `{SERIES}` and `{TIMESTAMPS}`), scored only on their steps after "
                f"the last step of the series' training windows (the last {self.unseen} steps of each series at "
                "most; the steps before are their history)")


def _order_key(stamp: str):
    """Time stamps as `from_dataframe` writes them (ISO text, or a number as text) in time order."""
    try:
        return (0, float(stamp), "")
    except ValueError:
        return (1, 0.0, stamp)


def windows_by_series(rows) -> Optional[dict[str, list[tuple[list, int]]]]:
    """{series: [(its steps' order keys, row index)] in time order}, or None unless every row carries `series` and
    non-empty `timestamps`."""
    if SERIES not in rows.column_names or TIMESTAMPS not in rows.column_names:
        return None
    out: dict[str, list] = {}
    for index, (series, stamps) in enumerate(zip(rows[SERIES], rows[TIMESTAMPS])):
        if not series or not stamps:
            return None
        out.setdefault(str(series), []).append(([_order_key(str(stamp)) for stamp in stamps], index))
    for windows in out.values():
        windows.sort(key=lambda window: (max(window[0]), min(window[0]), window[1]))
    return out


def time_split(rows, held_out: int) -> Optional[TimeSplit]:
    """Hold out `held_out` rows of `rows` (a `datasets.Dataset`) as each series' latest windows, in proportion to
    each series' windows (largest remainders first); None when the rows are not windows of series."""
    series = windows_by_series(rows)
    if series is None:
        return None
    total = sum(len(windows) for windows in series.values())
    held_out = int(min(max(held_out, 1), total - 1))
    names = sorted(series)
    shares = np.array([len(series[name]) * held_out / total for name in names])
    counts = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - counts), kind="stable")[: held_out - counts.sum()]:
        counts[i] += 1
    train, held, holding = [], [], 0
    for name, count in zip(names, counts):
        windows = series[name]
        count = min(int(count), len(windows) - 1)  # a series keeps one window at least to train on
        kept, out = windows[: len(windows) - count], windows[len(windows) - count:]
        train += [index for _, index in kept]
        if out:
            holding += 1
            cutoff = max(max(keys) for keys, _ in kept)
            held += [(index, sum(key <= cutoff for key in keys), len(keys)) for keys, index in out]
    held.sort()
    return TimeSplit(sorted(train), [i for i, _, _ in held], [s for _, s, _ in held], holding,
                     max(n - s for _, s, n in held) if held else 0)


def mask_seen_steps(rows, split: TimeSplit):
    """The held-out rows of `split`, their vectors of the steps that training windows hold too made history (no
    target). A row's groups are its steps' groups in order: a step starts at each group of the stream that opens the
    row (`x` or `y` in `from_dataframe`'s rows, whose forecast part has no past-only `p`), or, where that stream does
    not open each step, every step has the same number of groups."""
    seen = dict(zip(range(len(split.held)), split.seen))

    def mask(row: dict, index: int) -> dict:
        keys, steps = row["group_keys"], len(row[TIMESTAMPS])
        opening = stream_of(keys[0]) if keys else None
        starts = [g for g, key in enumerate(keys) if stream_of(key) == opening]
        if len(starts) != steps:
            if len(keys) % steps:
                raise DataError(f"dataset '{row['dataset_name']}', row {row['row_index']}: `{TIMESTAMPS}` lists "
                                f"{steps} steps but the row holds {len(keys)} placeholder groups, not the same number "
                                "per step; give one time stamp per step (or drop the column to split at random).")
            starts = list(range(0, len(keys), len(keys) // steps))
        # the first group of the first step no training window holds
        first = starts[seen[index]] if seen[index] < steps else len(keys)
        row["embedding_is_target"] = [is_target and group >= first
                                      for is_target, group in zip(row["embedding_is_target"], row["embedding_groups"])]
        return row

    return rows.select(split.held).map(mask, with_indices=True, desc="Held-out windows: history before the cut")
