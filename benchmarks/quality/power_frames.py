"""Why MASE and MSE disagree on power: two linear forecasters, each scored on both.

The quality suite's `power` rows (ACSF1 appliance power, 4 samples per vector) sit exactly still for long stretches
(an appliance that is off), so the in-sample seasonal naive error that scales MASE is near 0 in many rows and any
forecast that does not repeat the last value exactly counts thousands of times. This script fits, on the suite's
training rows, a ridge regression on the last k vectors with an intercept (`level`, what the ridge frame and the
suite's ridge baseline fit) and one on the last k increments without an intercept (`increments`: the forecast is
the last vector plus a linear function of the recent steps, exactly the last vector on a still history), rolls
both out 8 steps from the suite's origins of the 50 test rows, and prints, relative to persistence (the seasonal
naive forecast, season 1): MASE, the mean absolute error (a point's WQL) and the MSE, and the share of each one's
MASE that comes from the cells whose scale is below 1e-3 (the still histories).

    pip install --no-deps aeon==1.6.0
    python benchmarks/quality/power_frames.py [--penalty 1e-3]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sources import power  # noqa: E402

from wmfactory.eval.metrics import seasonal_scale  # noqa: E402

HORIZON = 8
STILL = 1e-3  # a scale below this: the history barely moves


def features(window: np.ndarray, increments: bool) -> np.ndarray:
    """The regressors of one forecast from the last vectors `window` (`[k + 1, d]` for increments, `[k, d]` else),
    newest first."""
    if increments:
        return np.diff(window, axis=0)[::-1].ravel()
    return np.r_[window[::-1].ravel(), 1.0]


def fit(rows: list[np.ndarray], k: int, increments: bool, penalty: float) -> np.ndarray:
    width = k + 1 if increments else k
    x, y = [], []
    for s in rows:
        for t in range(width, len(s)):
            x.append(features(s[t - width:t], increments))
            y.append(s[t] - s[t - 1] if increments else s[t])
    x, y = np.array(x), np.array(y)
    return np.linalg.solve(x.T @ x + penalty * len(x) * np.eye(x.shape[1]), x.T @ y)


def rollout(weights: np.ndarray, k: int, increments: bool, history: np.ndarray) -> np.ndarray:
    width = k + 1 if increments else k
    states = list(history)
    for _ in range(HORIZON):
        step = features(np.array(states[-width:]), increments) @ weights
        states.append(states[-1] + step if increments else step)
    return np.array(states[len(history):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--penalty", type=float, default=1e-3, help="ridge penalty per training pair")
    args = parser.parse_args()
    data = power()
    train = [row["s"].astype(np.float64) for row in data.train]
    test = [row["s"].astype(np.float64) for row in data.test]
    persistence, scales, targets, forecasts = [], [], [], {}
    names = [(form, k) for form in ("level", "increments") for k in (1, 3)]
    weights = {(form, k): fit(train, k, form == "increments", args.penalty) for form, k in names}
    for s in test:
        for origin in data.rollout_origins:
            scale = seasonal_scale(s, origin - 1, 1)
            future = s[origin:origin + HORIZON]
            targets.extend(future)
            scales.extend([scale] * HORIZON)
            persistence.extend([s[origin - 1]] * HORIZON)
            for form, k in names:
                forecasts.setdefault(f"{form}, k={k}", []).extend(
                    rollout(weights[form, k], k, form == "increments", s[:origin]))
    target, scale = np.array(targets), np.array(scales)
    scaled = np.isfinite(scale) & (scale > 0)
    still = scaled & (scale < STILL)

    def scores(points) -> dict:
        error = np.abs(np.array(points) - target)
        ratio = error[scaled] / scale[scaled]
        return {"mase": float(ratio.mean()), "mae": float(error.mean()),
                "mse": float((error ** 2).mean()),
                "mase_share_from_still": float((error[still] / scale[still]).sum() / ratio.sum())}

    reference = scores(persistence)
    result = {"still_cells": float(still.sum() / scaled.sum()), "penalty": args.penalty, "forecasters": {}}
    for name, points in {"persistence": persistence, **forecasts}.items():
        score = scores(points)
        result["forecasters"][name] = {
            "mase_relative": score["mase"] / reference["mase"], "mae_relative": score["mae"] / reference["mae"],
            "mse_relative": score["mse"] / reference["mse"], "mase_share_from_still": score["mase_share_from_still"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
