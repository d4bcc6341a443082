"""The sampling temperature of a distributional head, chosen after training on the evaluation split.

A head trained by likelihood on a few thousand vectors tends to be overconfident: its central 90% interval holds
fewer than 90% of the true values, and a rollout that feeds its draws back inherits the narrowness. Scaling the
spread by a temperature T (the component standard deviations of `mixture`, which below 1 also draws its components
from softmax(logits / T); the starting noise of `diffusion`) and
choosing T where the evaluation split's central 90% interval holds closest to 90% of the true next vectors
(teacher-forced, every dimension) is the post-hoc calibration of classifiers (Guo et al., 2017, temperature
scaling) carried over to interval forecasts. The chosen T is saved as `sampling_temperature` in config.json.

A rollout feeds its own draws back, and a one-step temperature under-covers further out; so each horizon band of a
rollout (1, 2-3, 4-7, 8-15, ...: `config.horizon_band`; horizon 1 too) gets its own temperature, chosen band after
band: with the earlier bands' temperatures fixed, the one whose sampled rollouts (`NUM_SAMPLES` per row) hold
closest to 90% of the true vectors at that band's horizons (`horizon_temperatures` in config.json). Each row is
rolled out from up to `MAX_STARTS` places (`rollout_starts`; `MAX_ROLLOUTS` in all): the first after the groups
that the ridge frame reads (`rollout_context`), the last from which the band's first horizon is still inside the
row, and evenly between.

Without an evaluation split, a tenth of the training rows (at most `MAX_CALIBRATION_ROWS`; the last row of a run with
fewer than ten) is held out of training for this (`calibration_split`): every tenth row, or, where the rows are
windows of time series (`data.splits`), each series' latest windows, scored only on their steps after the training
windows' last step (a rollout starts at the first of them)."""

import itertools

from typing import Iterable

import numpy as np
import torch

from ...data.splits import mask_seen_steps, time_split
from ...eval.metrics import rank_coverage
from ...inference import Sampling, generate_rows, vector_stream
from ...inference.rows import context_features, fills_kept
from ...model.config import horizon_band

TEMPERATURES = np.geomspace(0.25, 4.0, 25)  # ratio 1.12 between neighbours, 1.0 included
LEVELS = (50, 90)
NUM_SAMPLES = 32
MAX_TARGETS = 4096  # enough to place a 90% interval to about 1%; bounds the cost on a large evaluation split
CALIBRATION_EVERY = 10  # without an evaluation split, every tenth training row calibrates
MAX_CALIBRATION_ROWS = 256
MAX_ROLLOUT_ROWS = 64  # rows rolled out per band and temperature
MAX_STARTS = 4  # rollout starts per row and band: its earliest, its latest that reaches the band, and between
MAX_ROLLOUTS = 2 * MAX_ROLLOUT_ROWS  # rollouts per band and temperature: fewer starts per row where rows are many
ROLLOUT_BATCH = 16


def calibration_split(rows) -> tuple[object, object, list[int], str]:
    """(the training rows, the rows held out to calibrate, their indices, how they were chosen): as many rows as
    every `CALIBRATION_EVERY`-th row (at most `MAX_CALIBRATION_ROWS`, at least one). Where the rows are windows of
    time series (`data.splits`), they are each series' latest windows, scored only on their steps after the
    training windows' last step; otherwise every `CALIBRATION_EVERY`-th row, or the last row of fewer than ten. `rows`: a
    `datasets.Dataset` of two rows or more."""
    n = len(rows)
    held = list(range(CALIBRATION_EVERY - 1, n, CALIBRATION_EVERY))[:MAX_CALIBRATION_ROWS] or [n - 1]
    by_time = time_split(rows, len(held))
    if by_time is not None:
        return rows.select(by_time.train), mask_seen_steps(rows, by_time), by_time.held, by_time.describe(n)
    kept = sorted(set(range(n)) - set(held))
    shown = ", ".join(map(str, held[:5])) + (", ..." if len(held) > 5 else "")
    return rows.select(kept), rows.select(held), held, (f"{len(held)} of {n} training rows (every "
                                                        f"{CALIBRATION_EVERY}th: rows {shown}) held out")


def interval_hits(draws: torch.Tensor, target: torch.Tensor) -> list[float]:
    """How many values of `target` `[n, d]` lie inside the central 50% and 90% intervals of the forecast drawn as
    `draws` `[S, n, d]`, counted from each value's rank among the draws as `wmfactory eval` counts them
    (`rank_coverage`: unbiased whatever the number of draws)."""
    below = (draws < target[None]).sum(0).cpu().numpy()
    observed = ~torch.isnan(target).cpu().numpy()  # `missing_values: mask`: missing entries are not counted
    return [float(rank_coverage(below, draws.shape[0], level)[observed].sum()) for level in LEVELS]


def coverage_by_temperature(model, batches: Iterable[dict], seed: int = 0, reduce=None,
                            temperatures: np.ndarray = TEMPERATURES) -> tuple[np.ndarray, int]:
    """(`[len(temperatures), len(LEVELS)]`, the number of values scored): the share of target values (every dimension of every target vector of
    `batches`, at most `MAX_TARGETS` vectors per process) inside the central intervals of `NUM_SAMPLES` draws at each
    temperature (one temperature for every predicted stream). `reduce` sums a tensor over processes.""" 
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    counts = torch.zeros((len(temperatures), len(LEVELS) + 1), dtype=torch.float64, device=device)
    seen = 0
    for batch in batches:
        if seen >= MAX_TARGETS:
            break
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        for stream, params, frame, target in model.target_distributions(**batch):
            if target.shape[0] == 0:
                continue
            seen += target.shape[0]
            head = model.stream_part("prediction_head", stream)
            for i, temperature in enumerate(temperatures):
                with torch.no_grad():
                    draws = head.sample(params, frame, NUM_SAMPLES, float(temperature), generator)
                counts[i, :-1] += torch.tensor(interval_hits(draws.float(), target.float()), dtype=torch.float64,
                                               device=device)
                counts[i, -1] += int((~torch.isnan(target)).sum())
    if reduce is not None:
        counts = reduce(counts)
    total = counts[:, -1:].clamp_min(1)
    return (counts[:, :-1] / total).cpu().numpy(), int(counts[0, -1])


def choose_temperature(coverage: np.ndarray, temperatures: np.ndarray = TEMPERATURES) -> float:
    """The temperature whose central 90% interval holds closest to 90% of the values (`coverage` `[t, levels]`);
    among equally close ones, the nearest to 1. One scale cannot fix the shape of a forecast (a mixture often holds
    too much in its centre and too little in its tails), so it is fitted to the interval that is reported; the
    50% coverage is recorded beside it."""
    gap = np.abs(coverage[:, LEVELS.index(90)] - 0.9)
    order = np.lexsort((np.abs(np.log(temperatures)), np.round(gap, 6)))
    return float(temperatures[order[0]])


def rollout_context(model) -> int:
    """The groups a calibration rollout is given: the history the ridge frame reads (the chosen one, else
    `ridge_history`; 1 without a ridge frame), so that its first forecasts are made as in use."""
    config = model.config
    if not config.ridge_frame:
        return 1
    chosen = [int(choice.get("history", config.ridge_history)) for choice in config.ridge_choice.values()]
    return max(chosen or [config.ridge_history])


def first_target_group(model, features: dict) -> int:
    """The first group of `features` that holds a target vector of a predicted stream (0 when none does)."""
    return next((group for group, is_target, name in zip(features["embedding_groups"], features["embedding_is_target"],
                                                        features["embedding_streams"])
                 if is_target and not model.config.is_condition(name)), 0)


def rollout_coverage(model, rows: list[dict], band: int, seed: int = 0,
                     context: int | list[int] = 1) -> tuple[float, int]:
    """(the share of true values at the horizons of `band` inside the central 90% interval of `NUM_SAMPLES` sampled
    rollouts from each row's first `context` groups (one count, or one per row), at the model's temperatures; the
    number of values scored)."""
    hits, values = 0.0, 0
    contexts = [context] * len(rows) if isinstance(context, int) else list(context)
    for start in range(0, len(rows), ROLLOUT_BATCH):
        batch, given = rows[start: start + ROLLOUT_BATCH], contexts[start: start + ROLLOUT_BATCH]
        for features, groups in zip(batch, generate_rows(model, batch, given, Sampling(NUM_SAMPLES, None, seed))):
            vectors = vector_stream(features, model.config.embedding_dim)
            for group in groups:
                if group.samples is None or horizon_band(group.horizon) != band:
                    continue
                draws = torch.as_tensor(np.asarray(group.samples), dtype=torch.float32)  # [S, n, d]
                target = torch.as_tensor(vectors[group.vector_indices][:, : draws.shape[-1]], dtype=torch.float32)
                hits += interval_hits(draws, target)[LEVELS.index(90)]
                values += int((~torch.isnan(target)).sum())
    return hits / max(values, 1), values


def rollout_starts(features: dict, first: int, horizon: int, streams: int, count: int = MAX_STARTS) -> list[int]:
    """Up to `count` groups, from `first` on and evenly spread, after which a rollout of the row reaches `horizon`
    inside it (steps of `streams` groups, one per stream)."""
    groups = max(features["embedding_groups"], default=-1) + 1
    latest = groups - 1 - (horizon - 1) * streams
    if latest < first:
        return []
    every = list(range(first, latest + 1, streams))
    return sorted({every[i] for i in np.linspace(0, len(every) - 1, min(count, len(every))).round().astype(int)})


def calibrate_horizons(model, rows: list[dict], first: float, seed: int = 0,
                       temperatures: np.ndarray = TEMPERATURES) -> tuple[list[float], dict[str, dict]]:
    """The temperature of each horizon band, band 0 (horizon 1) included, and for each band the coverage at every
    temperature tried; sets `model.config.horizon_temperatures`. `first`, the teacher-forced choice, breaks ties of
    band 0 and stands where no row reaches horizon 1. Stops at the first band that no row reaches.

    Horizon 1 of a rollout is chosen on rollouts too, not left at the teacher-forced temperature: that one is fitted
    on every position of the rows, and where a row's first states differ from its later ones (the double well's
    start near the barrier) the forecast made where rollouts start is calibrated differently (docs/benchmarks.md)."""
    config = model.config
    chosen, report = [float(first)], {}
    streams = len(config.stream_dims)
    rows = rows[:MAX_ROLLOUT_ROWS]
    context = rollout_context(model)
    # a row whose first target comes later (a held-out window of a series: its steps that training holds too are
    # history) starts its rollout there, so that no scored value was trained on
    firsts = [max(context, first_target_group(model, features)) for features in rows]
    per_row = max(1, min(MAX_STARTS, MAX_ROLLOUTS // max(len(rows), 1)))
    with fills_kept(model):  # `missing_values: mask`: each history's gaps solved once, not once per temperature
        _calibrate_bands(model, rows, firsts, context, per_row, streams, seed, temperatures, chosen, report)
    config.horizon_temperatures = [round(t, 4) for t in chosen]
    return config.horizon_temperatures, report


def _calibrate_bands(model, rows, firsts, context, per_row, streams, seed, temperatures, chosen, report) -> None:
    """`calibrate_horizons`' loop over the bands: extends `chosen` and `report`."""
    config = model.config
    for band in itertools.count(0):
        last = 2 ** (band + 1) - 1  # the band's last horizon: cut the rows there (the rollout's cost)
        # rollouts from several places of each row, so that a band's temperature holds wherever a rollout starts
        # (where a row's first states differ from its later ones, one start would calibrate for it alone)
        pairs = [(features, start) for features, first in zip(rows, firsts)
                 for start in rollout_starts(features, first, 2 ** band, streams, per_row)]
        if not pairs:  # no row reaches the band
            break
        cut = [context_features(features, start - context + (context + last) * streams) for features, start in pairs]
        starts = [start for _, start in pairs]
        shares = []
        for temperature in temperatures:
            config.horizon_temperatures = chosen[:band] + [float(temperature)]
            share, values = rollout_coverage(model, cut, band, seed, starts)
            if values == 0:
                break
            shares.append(share)
        if not shares:
            break
        gap = np.abs(np.asarray(shares) - 0.9)
        # among equally close ones, the nearest to the band before's
        order = np.lexsort((np.abs(np.log(temperatures[: len(shares)] / chosen[-1])), np.round(gap, 6)))
        chosen[band:] = [float(temperatures[order[0]])]
        report[f"{2 ** band}-{last}"] = {"temperature": chosen[-1], "values": values,
                                         "coverage_90": {f"{t:.3g}": share for t, share in zip(temperatures, shares)}}
