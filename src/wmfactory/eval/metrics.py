"""Forecast metrics and the baselines every forecasting practitioner checks first.

All metrics are means over vectors: `mse` (mean over d of the squared error), `mae`, `cosine` (similarity),
`l2` (Euclidean distance) and `contrastive_accuracy` (for each prediction, the fraction of other rows' targets that
lie farther from it than its own target: 1.0 means the prediction singles out its row, 0.5 is chance)."""

import numpy as np

from ..model.statistics import ridge_features

METRICS = ("mse", "mae", "cosine", "l2", "contrastive_accuracy")
# scores of a forecast given as samples (proper scoring rules, lower is better, and interval coverage)
DISTRIBUTION_METRICS = ("crps", "energy_score", "coverage_50", "coverage_90")
PIT_BINS = 10
BASELINES = ("persistence", "linear_extrapolation", "training_mean", "ridge")


def forecast_metrics(predicted: np.ndarray, target: np.ndarray, rows: np.ndarray, block: int = 1024) -> dict:
    """`predicted`, `target`: `[n, d]`; `rows`: `[n]` row id of each vector (for the contrastive accuracy)."""
    predicted = predicted.astype(np.float64)
    target = target.astype(np.float64)
    difference = predicted - target
    norms = np.linalg.norm(predicted, axis=1) * np.linalg.norm(target, axis=1)
    cosine = np.sum(predicted * target, axis=1) / np.maximum(norms, 1e-12)
    own = np.linalg.norm(difference, axis=1)
    farther, compared = [], []
    for start in range(0, len(predicted), block):
        stop = start + block
        distances = np.linalg.norm(predicted[start:stop, None, :] - target[None, :, :], axis=2)  # [b, n]
        others = rows[start:stop, None] != rows[None, :]
        farther.append(((distances > own[start:stop, None]) & others).sum(axis=1))
        compared.append(others.sum(axis=1))
    farther, compared = np.concatenate(farther), np.concatenate(compared)
    has_others = compared > 0
    # undefined (None) when every scored vector comes from one row
    contrastive = float(np.mean(farther[has_others] / compared[has_others])) if has_others.any() else None
    return {
        "mse": float(np.mean(difference**2)),
        "mae": float(np.mean(np.abs(difference))),
        "cosine": float(np.mean(cosine)),
        "l2": float(np.mean(own)),
        "contrastive_accuracy": contrastive,
    }


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


def skill(model_error: float, reference_error: float) -> float:
    """Skill score against a reference forecast (persistence): 1 - model error / reference error. Positive when the
    model is better; 1 is perfect."""
    return 1.0 - model_error / max(reference_error, 1e-30)


def baseline_forecasts(stream: np.ndarray, origin: int, index: int, mean: np.ndarray, ridge: np.ndarray,
                       history: int) -> dict[str, np.ndarray]:
    """Forecasts of `stream[index]` made at `origin` (the last vector known, `origin < index`).

    persistence: the last known vector; linear extrapolation: continue the last step, x[o] + k (x[o] - x[o-1]) for
    k = index - origin (2 x[t-1] - x[t-2] one step ahead); training mean: the mean training vector; ridge: the
    ridge regression on the last `history` known vectors, fitted on the training split, rolled forward."""
    steps = index - origin
    last, before = stream[origin], stream[origin - 1]
    return {
        "persistence": last,
        "linear_extrapolation": last + steps * (last - before),
        "training_mean": mean,
        "ridge": ridge_path(ridge, stream[origin - history + 1: origin + 1], steps)[-1],
    }


def distribution_metrics(samples: np.ndarray, target: np.ndarray, block: int = 64) -> dict:
    """Proper scores of forecasts given as samples `[n, S, d]` against targets `[n, d]`, means over vectors:
    - `crps`: the continuous ranked probability score per dimension, with the fair sample estimator
      E|X - y| - E|X - X'| / 2 over distinct pairs of samples (for S = 1, or identical samples, it is the MAE);
    - `energy_score`: its multivariate form on whole vectors, E||X - y|| - E||X - X'|| / 2;
    - `coverage_50`, `coverage_90`: the share of target values inside the central 50% and 90% sample intervals;
    - `pit`: the histogram (`PIT_BINS` bins, shares) of the probability integral transform, the share of samples
      below the target in each dimension: flat when the forecast is calibrated."""
    x, y = samples.astype(np.float64), target.astype(np.float64)
    s = x.shape[1]
    crps, energy = [], []
    for start in range(0, len(x), block):
        xb, yb = x[start:start + block], y[start:start + block]
        error, error_norm = np.abs(xb - yb[:, None]).mean(1), np.linalg.norm(xb - yb[:, None], axis=-1).mean(1)
        if s > 1:
            pairs = xb[:, :, None] - xb[:, None, :]  # [b, S, S, d]; the diagonal is 0
            error = error - np.abs(pairs).sum((1, 2)) / (2 * s * (s - 1))
            error_norm = error_norm - np.linalg.norm(pairs, axis=-1).sum((1, 2)) / (2 * s * (s - 1))
        crps.append(error.mean(1))
        energy.append(error_norm)
    result = {"crps": float(np.concatenate(crps).mean()), "energy_score": float(np.concatenate(energy).mean())}
    for level in (50, 90):
        low, high = np.quantile(x, [(0.5 - level / 200), (0.5 + level / 200)], axis=1)
        result[f"coverage_{level}"] = float(((y >= low) & (y <= high)).mean())
    pit = (x < y[:, None]).mean(1).ravel()
    result["pit"] = (np.histogram(pit, bins=PIT_BINS, range=(0, 1))[0] / max(pit.size, 1)).tolist()
    return result


def baseline_samples(points: dict[str, np.ndarray], steps: int, statistics, num_samples: int,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The baselines as distributions `[S, d]`: persistence and ridge with a Gaussian spread of their one-step
    training errors, grown as sqrt(steps) (a random walk of errors), the training mean with the training standard
    deviation; linear extrapolation stays a point (every sample the same)."""
    spreads = {"persistence": statistics.step_std.double().cpu().numpy() * np.sqrt(steps),
               "ridge": statistics.ridge_residual_std.double().cpu().numpy() * np.sqrt(steps),
               "training_mean": statistics.std.double().cpu().numpy()}
    out = {}
    for name, point in points.items():
        spread = spreads.get(name, 0.0)
        out[name] = point[None] + spread * rng.standard_normal((num_samples, len(point)))
    return out
