"""Forecast metrics and the baselines every forecasting practitioner checks first.

All metrics are means over vectors: `mse` (mean over d of the squared error), `mae`, `cosine` (similarity),
`l2` (Euclidean distance) and `contrastive_accuracy` (for each prediction, the fraction of other rows' targets that
lie farther from it than its own target: 1.0 means the prediction singles out its row, 0.5 is chance)."""

import numpy as np

from ..model.statistics import ridge_features

METRICS = ("mse", "mae", "cosine", "l2", "contrastive_accuracy")
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
