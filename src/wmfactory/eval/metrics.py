"""Forecast metrics and the baselines every forecasting practitioner checks first.

All metrics are means over vectors: `mse` (mean over d of the squared error), `mae`, `cosine` (similarity),
`l2` (Euclidean distance) and `contrastive_accuracy` (for each prediction, the fraction of other rows' targets that
lie farther from it than its own target: 1.0 means the prediction singles out its row, 0.5 is chance).

Every metric runs over blocks of vectors, so that its working memory does not grow with their number: the
contrastive accuracy compares every prediction with every target through a `[block, block]` matrix of squared
distances, and the scores of samples are sums accumulated block by block (`DistributionScores`)."""

from typing import Optional

import numpy as np

from ..model.statistics import ridge_features

METRICS = ("mse", "mae", "cosine", "l2", "contrastive_accuracy")
# scores of a forecast given as samples (proper scoring rules, lower is better, and interval coverage)
DISTRIBUTION_METRICS = ("crps", "energy_score", "wql", "coverage_50", "coverage_90")
QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # of the weighted quantile loss, by default
PIT_BINS = 10
BASELINES = ("persistence", "seasonal_naive", "linear_extrapolation", "training_mean", "ridge")
# scored where the model has them: the ridge frame's ridge that also reads the condition streams (`ridge_conditions`);
# and where asked for (`baselines: statsforecast`, in rollouts), AutoETS and AutoARIMA (`eval.statistical`)
OPTIONAL_BASELINES = ("ridge_conditions", "auto_ets", "auto_arima")
BLOCK_BYTES = 32 * 2**20  # float64 working memory of one block of sample scores


def forecasters_of(scores: dict) -> tuple[str, ...]:
    """The model and the baselines present in `scores` (a pool's forecasts, a block of a report, or a mode's
    geometric means): every one of `BASELINES`, then those of `OPTIONAL_BASELINES` that `scores` holds."""
    return ("model",) + BASELINES + tuple(name for name in OPTIONAL_BASELINES if name in scores)


def forecast_metrics(predicted: np.ndarray, target: np.ndarray, rows: np.ndarray, block: int = 1024) -> dict:
    """`predicted`, `target`: `[n, d]`; `rows`: `[n]` row id of each vector (for the contrastive accuracy).
    Missing target entries (NaN, `missing_values: mask`) are not scored: `mse` and `mae` are means over the observed
    entries, and for the vector metrics a missing entry takes the forecast's own value (it adds no error)."""
    n = len(predicted)
    rows = np.asarray(rows)
    observed = ~np.isnan(target)
    target = np.where(observed, target, predicted)
    sums = {"mse": 0.0, "mae": 0.0, "cosine": 0.0, "l2": 0.0}
    own = np.empty(n)  # distance of each prediction to its own target
    for start in range(0, n, block):
        p, t = predicted[start:start + block].astype(np.float64), target[start:start + block].astype(np.float64)
        difference = p - t
        norms = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
        own[start:start + block] = np.linalg.norm(difference, axis=1)
        sums["mse"] += float(np.sum(difference**2))
        sums["mae"] += float(np.sum(np.abs(difference)))
        sums["cosine"] += float(np.sum(np.sum(p * t, axis=1) / np.maximum(norms, 1e-12)))
    farther, compared = _contrastive_counts(predicted, target, rows, own, block)
    has_others = compared > 0
    # undefined (None) when every scored vector comes from one row
    contrastive = float(np.mean(farther[has_others] / compared[has_others])) if has_others.any() else None
    values = max(int(observed.sum()), 1)
    return {
        "mse": sums["mse"] / values,
        "mae": sums["mae"] / values,
        "cosine": sums["cosine"] / n,
        "l2": float(np.mean(own)),
        "contrastive_accuracy": contrastive,
    }


def _contrastive_counts(predicted: np.ndarray, target: np.ndarray, rows: np.ndarray, own: np.ndarray,
                        block: int) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction, how many other rows' targets lie strictly farther than its own target (`own`), and how
    many other rows' targets there are. Squared distances come from the Gram form |p|^2 + |t|^2 - 2 p.t, one
    `[block, block]` matrix product at a time; where that form is within its rounding error of the own distance,
    the distance is recomputed directly as ||p - t||, so that ties count exactly as a direct comparison counts them."""
    n, d = predicted.shape
    slack = 8 * (d + 4) * np.finfo(np.float64).eps  # relative rounding error of the Gram form, with a margin
    own_squared = own**2
    target_squared = np.concatenate([np.einsum("nd,nd->n", t, t) for t in
                                     (target[s:s + block].astype(np.float64) for s in range(0, n, block))])
    farther, compared = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for start in range(0, n, block):
        p = predicted[start:start + block].astype(np.float64)  # [b, d]
        p_squared, reference = np.einsum("nd,nd->n", p, p), own_squared[start:start + block]
        for column in range(0, n, block):
            t = target[column:column + block].astype(np.float64)  # [c, d]
            scale = p_squared[:, None] + target_squared[None, column:column + block]
            squared = scale - 2 * (p @ t.T)  # [b, c]
            others = rows[start:start + block, None] != rows[None, column:column + block]
            beyond = squared > reference[:, None]
            unsure = others & (np.abs(squared - reference[:, None]) <= slack * (scale + reference[:, None]))
            i, j = np.nonzero(unsure)
            if len(i):
                beyond[i, j] = np.linalg.norm(p[i] - t[j], axis=1) > own[start + i]
            farther[start:start + block] += (beyond & others).sum(axis=1)
            compared[start:start + block] += others.sum(axis=1)
    return farther, compared


def ridge_path(ridge: np.ndarray, history: np.ndarray, steps: int) -> np.ndarray:
    """Roll the ridge regression forward: `ridge` `[k*d + 1, d]` maps `ridge_features` of the last k vectors to the
    next; `history` `[k, d]` (most recent last) -> `[steps, d]`, each forecast fed back."""
    window = np.asarray(history, dtype=np.float64)
    out = []
    for _ in range(steps):
        forecast = ridge_features(window[None])[0] @ ridge
        out.append(forecast)
        window = np.concatenate([window[1:], forecast[None]])
    return np.asarray(out)


def ridge_conditions_path(ridge: np.ndarray, history: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """Roll the ridge frame's ridge that also reads the condition streams forward: `ridge` `[j*d + j*c + 1, d]`,
    `history` `[j, d]` (the stream's last known vectors, most recent last), `conditions` `[steps, j, c]` (for each
    forecast step, the last j condition vectors before it, most recent first: the conditions are known ahead)
    -> `[steps, d]`, each forecast fed back."""
    window = np.asarray(history, dtype=np.float64)
    out = []
    for step in range(len(conditions)):
        forecast = ridge_features(window[None], conditions[step][None])[0] @ ridge
        out.append(forecast)
        window = np.concatenate([window[1:], forecast[None]])
    return np.asarray(out)


def condition_histories(names: list[str], vectors: np.ndarray, stream: str, conditions: list[tuple[str, int]],
                        k: int) -> np.ndarray:
    """For each vector of `stream` in a row (`names`: each vector's stream in reading order, `vectors` `[v, W]`),
    the last `k` vectors of each condition stream `(name, d)` before it, most recent first, zeros where there are
    fewer, side by side: `[n_stream, k, sum d]` (what the ridge frame reads, as in training)."""
    width = sum(d for _, d in conditions)
    recent: dict[str, list[np.ndarray]] = {name: [] for name, _ in conditions}
    dims = dict(conditions)
    out = []
    for vector, name in zip(vectors, names):
        if name == stream:
            row, start = np.zeros((k, width)), 0
            for condition, d in conditions:
                for back, earlier in enumerate(recent[condition][::-1][:k]):
                    row[back, start:start + d] = earlier
                start += d
            out.append(row)
        elif name in recent:
            recent[name].append(np.asarray(vector, dtype=np.float64)[: dims[name]])
    return np.asarray(out).reshape(len(out), k, width)


def skill(model_error: float, reference_error: float) -> float:
    """Skill score against a reference forecast (persistence): 1 - model error / reference error. Positive when the
    model is better; 1 is perfect."""
    return 1.0 - model_error / max(reference_error, 1e-30)


def baseline_forecasts(stream: np.ndarray, origin: int, index: int, mean: np.ndarray, ridge: np.ndarray,
                       history: int, seasonality: int = 1) -> dict[str, np.ndarray]:
    """Forecasts of `stream[index]` made at `origin` (the last vector known, `origin < index`).

    persistence: the last known vector; seasonal naive: the last known vector of the same season, x[i - m j] for
    the smallest j that reaches the known part (m = `seasonality`; m = 1 is persistence); linear extrapolation:
    continue the last step, x[o] + k (x[o] - x[o-1]) for k = index - origin (2 x[t-1] - x[t-2] one step ahead);
    training mean: the mean training vector; ridge: the ridge regression on the last `history` known vectors,
    fitted on the training split, rolled forward."""
    steps = index - origin
    last, before = stream[origin], stream[origin - 1]
    return {
        "persistence": last,
        "seasonal_naive": stream[origin - seasonality + 1 + (steps - 1) % seasonality],
        "linear_extrapolation": last + steps * (last - before),
        "training_mean": mean,
        "ridge": ridge_path(ridge, stream[origin - history + 1: origin + 1], steps)[-1],
    }


def forward_filled(stream: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """A stream `[n, d]` with each missing (NaN) entry replaced by the last observed value of its dimension before it,
    and by `fallback` `[d]` (the training mean) before the first: the inputs of the baselines under
    `missing_values: mask`."""
    stream = np.array(stream, dtype=np.float64)
    if not np.isnan(stream).any():
        return stream
    previous = np.asarray(fallback, dtype=np.float64)
    for t in range(len(stream)):
        stream[t] = np.where(np.isnan(stream[t]), previous, stream[t])
        previous = stream[t]
    return stream


def seasonal_errors(stream: np.ndarray, origin: int, seasonality: int = 1) -> np.ndarray:
    """The in-sample errors of the seasonal naive forecast on the known part of a stream, x[t] - x[t - m] for
    m <= t <= origin: `[origin - m + 1, d]` (empty when fewer than m + 1 vectors are known; NaN where either entry
    is missing)."""
    known = np.asarray(stream[: origin + 1], dtype=np.float64)
    return known[seasonality:] - known[:-seasonality]


def seasonal_scale(stream: np.ndarray, origin: int, seasonality: int = 1) -> np.ndarray:
    """The scale of MASE `[d]`: per dimension (each one a series of its own), the mean absolute in-sample error of
    the seasonal naive forecast on the vectors known at `origin`; 0 where the known part repeats exactly, NaN
    with fewer than m + 1 known vectors (or, with missing values, no observed pair in that dimension)."""
    errors = seasonal_errors(stream, origin, seasonality)
    pairs = (~np.isnan(errors)).sum(axis=0)  # [d]: the observed pairs (all of them without missing values)
    return np.where(pairs > 0, np.nansum(np.abs(errors), axis=0) / np.maximum(pairs, 1), np.nan)


def rank_coverage(below: np.ndarray, num_samples: int, level: float) -> np.ndarray:
    """How likely each target value lies in the central `level`% interval of the forecast, from the number of its
    S samples below it (`below`, any shape): the randomised PIT of a value with r samples below it is uniform on
    [r / (S + 1), (r + 1) / (S + 1)], and uniform on [0, 1] when the forecast is calibrated; the result is the
    share of that range inside [0.5 - level / 200, 0.5 + level / 200], so its mean is `level` / 100 for a
    calibrated forecast whatever S. (The interval between sample quantiles is narrower than the forecast's own:
    with 32 samples, a calibrated forecast's 5%-95% sample interval holds about 85% of the values.)"""
    low, high = 0.5 - level / 200, 0.5 + level / 200
    width = 1.0 / (num_samples + 1)
    start = np.asarray(below, dtype=np.float64) * width
    return np.clip(np.minimum(high, start + width) - np.maximum(low, start), 0.0, None) / width


class DistributionScores:
    """Proper scores of forecasts given as samples `[n, S, d]` against targets `[n, d]`, means over vectors:
    - `crps`: the continuous ranked probability score per dimension, with the fair sample estimator
      E|X - y| - E|X - X'| / 2 over distinct pairs of samples (for S = 1, or identical samples, it is the MAE);
    - `energy_score`: its multivariate form on whole vectors, E||X - y|| - E||X - X'|| / 2;
    - `wql`: the weighted quantile loss over `QUANTILE_LEVELS`, from the quantiles of the samples: the pinball
      loss of each level summed over values, times 2 / the sum of |target|, averaged over the levels;
    - `coverage_50`, `coverage_90`: the share of target values inside the central 50% and 90% intervals of the
      forecast, from each value's rank among the samples (`rank_coverage`: 0.5 and 0.9 for a calibrated forecast,
      whatever the number of samples);
    - `pit`: the histogram (`PIT_BINS` bins, shares) of the probability integral transform, the share of samples
      below the target in each dimension: flat when the forecast is calibrated.
    Accumulated over vectors given one or a few at a time (`add`), as sums over blocks whose float64 working memory
    stays near `BLOCK_BYTES`; `merge` adds another's sums (the scores of the union of their vectors)."""

    def __init__(self, quantile_levels=QUANTILE_LEVELS):
        self.vectors, self.values = 0, 0  # vectors scored; values (vectors x d) for the per-value shares
        self.levels = np.asarray(quantile_levels, dtype=np.float64)
        self.absolute_target = 0.0  # the sum of |y|, the weight of the quantile loss
        self.num_samples = None
        self.sums = {name: 0.0 for name in DISTRIBUTION_METRICS}
        self.pit = np.zeros(PIT_BINS, dtype=np.int64)
        self._samples: list[np.ndarray] = []  # [S, d] each, waiting for a full block
        self._target: list[np.ndarray] = []

    def add(self, samples: np.ndarray, target: np.ndarray) -> None:
        """`samples` `[S, d]` and `target` `[d]` of one vector, or `[b, S, d]` and `[b, d]` of several."""
        if samples.ndim == 2:
            samples, target = samples[None], target[None]
        self.num_samples = samples.shape[1]
        self._samples.extend(samples)
        self._target.extend(target)
        if len(self._samples) >= self._block():
            self._flush()

    def merge(self, other: "DistributionScores") -> None:
        other._flush()
        self.vectors, self.values = self.vectors + other.vectors, self.values + other.values
        self.absolute_target += other.absolute_target
        self.num_samples = self.num_samples or other.num_samples
        for name in self.sums:
            self.sums[name] += other.sums[name]
        self.pit += other.pit

    def result(self) -> dict:
        self._flush()
        result = {name: self.sums[name] / max(self.vectors if name == "energy_score" else self.values, 1)
                  for name in DISTRIBUTION_METRICS if name != "wql"}
        # 2 sum pinball / sum |y|, averaged over the levels (GluonTS's mean weighted quantile loss)
        result["wql"] = (2 * self.sums["wql"] / (len(self.levels) * self.absolute_target)
                         if self.absolute_target > 0 and len(self.levels) else None)
        result["pit"] = (self.pit / max(self.values, 1)).tolist()
        return result

    def _block(self) -> int:
        s, d = self._samples[0].shape
        return max(1, BLOCK_BYTES // (8 * s * d))

    def _flush(self) -> None:
        if not self._samples:
            return
        x, y = np.asarray(self._samples, dtype=np.float64), np.asarray(self._target, dtype=np.float64)
        self._samples, self._target = [], []
        # missing target entries (NaN) are not scored: the per-value scores count the observed ones, and the energy
        # score's vector distance takes the draws' mean there
        observed = ~np.isnan(y)
        y = np.where(observed, y, x.mean(1))
        s = x.shape[1]
        error, error_norm = np.abs(x - y[:, None]).mean(1), np.linalg.norm(x - y[:, None], axis=-1).mean(1)
        if s > 1:  # E|X - X'| / 2 over the s (s - 1) ordered pairs of distinct samples: each unordered pair once
            spread, spread_norm = np.zeros_like(error), np.zeros_like(error_norm)
            for i in range(s - 1):
                pairs = x[:, i + 1:] - x[:, i:i + 1]  # [b, s - i - 1, d]
                spread += np.abs(pairs).sum(1)
                spread_norm += np.linalg.norm(pairs, axis=-1).sum(1)
            error, error_norm = error - spread / (s * (s - 1)), error_norm - spread_norm / (s * (s - 1))
        self.sums["crps"] += float(error[observed].sum())
        self.sums["energy_score"] += float(error_norm.sum())
        if len(self.levels):
            quantiles = np.quantile(x, self.levels, axis=1)  # [Q, b, d]
            error = y[None] - quantiles
            levels = self.levels[:, None, None]
            self.sums["wql"] += float(np.maximum(levels * error, (levels - 1) * error)[:, observed].sum())
        self.absolute_target += float(np.abs(y[observed]).sum())
        below = (x < y[:, None]).sum(1)  # [b, d] the rank of each target value among its samples
        for level in (50, 90):
            self.sums[f"coverage_{level}"] += float(rank_coverage(below, s, level)[observed].sum())
        self.pit += np.histogram((x < y[:, None]).mean(1)[observed], bins=PIT_BINS, range=(0, 1))[0]
        self.vectors, self.values = self.vectors + len(x), self.values + int(observed.sum())


def baseline_samples(points: dict[str, np.ndarray], steps: int, statistics, num_samples: int,
                     rng: np.random.Generator, seasonal_std: Optional[np.ndarray] = None,
                     seasonality: int = 1) -> dict[str, np.ndarray]:
    """The baselines as distributions `[S, d]`: persistence and ridge with a Gaussian spread of their one-step
    training errors, grown as sqrt(steps) (a random walk of errors), the training mean with the training standard
    deviation; seasonal naive with the root mean square of its in-sample errors on the row (`seasonal_std` `[d]`),
    grown as sqrt(the seasons ahead); linear extrapolation stays a point (every sample the same)."""
    spreads = {"persistence": statistics.step_std.double().cpu().numpy() * np.sqrt(steps),
               "ridge": statistics.ridge_residual_std.double().cpu().numpy() * np.sqrt(steps),
               # the frame's own residual spread is not kept: the plain ridge's stands in
               "ridge_conditions": statistics.ridge_residual_std.double().cpu().numpy() * np.sqrt(steps),
               "training_mean": statistics.std.double().cpu().numpy()}
    if seasonal_std is not None:
        spreads["seasonal_naive"] = seasonal_std * np.sqrt(-(-steps // seasonality))
    out = {}
    for name, point in points.items():
        spread = spreads.get(name, 0.0)
        out[name] = point[None] + spread * rng.standard_normal((num_samples, len(point)))
    return out
