"""The sampling temperature of a distributional head, chosen after training on the evaluation split.

A head trained by likelihood on a few thousand vectors tends to be overconfident: its central 90% interval holds
fewer than 90% of the true values, and a rollout that feeds its draws back inherits the narrowness. Scaling the
spread by a temperature T (the component standard deviations of `mixture`, the starting noise of `diffusion`) and
choosing T where the evaluation split's central 90% interval holds closest to 90% of the true next vectors
(teacher-forced, every dimension) is the post-hoc calibration of classifiers (Guo et al., 2017, temperature
scaling) carried over to interval forecasts. The chosen T is saved as `sampling_temperature` in config.json."""

from typing import Iterable

import numpy as np
import torch

from ...eval.metrics import rank_coverage

TEMPERATURES = np.geomspace(0.5, 4.0, 19)  # ratio 1.12 between neighbours, 1.0 included
LEVELS = (50, 90)
NUM_SAMPLES = 32
MAX_TARGETS = 4096  # enough to place a 90% interval to about 1%; bounds the cost on a large evaluation split


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
