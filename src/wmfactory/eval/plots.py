"""Every picture wmfactory draws: the training curves (from `trainer_state.json`), and of an evaluation the error
against horizon and true vs predicted trajectories in a 2-D PCA view."""

import json
import math
import os
from typing import Any

import numpy as np

from ..extras.logging import get_logger
from .metrics import BASELINES

logger = get_logger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(values: list[float]) -> list[float]:
    """Exponential moving average whose strength grows with the number of points (as in LLaMA-Factory's plots)."""
    if not values:
        return []
    weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    smoothed, last = [], values[0]
    for value in values:
        last = last * weight + (1 - weight) * value
        smoothed.append(last)
    return smoothed


def plot_loss(save_dir: str, keys: tuple[str, ...] = ("loss", "embedding_loss", "lm_loss")) -> list[str]:
    """Writes `training_<key>.png` for each key present in the log history; returns the written paths."""
    plt = _pyplot()
    with open(os.path.join(save_dir, "trainer_state.json"), encoding="utf-8") as f:
        history = json.load(f)["log_history"]
    written = []
    for key in keys:
        points = [(entry["step"], entry[key]) for entry in history if key in entry]
        if not points:
            logger.warning(f"No `{key}` in the log history: training_{key}.png not drawn.")
            continue
        steps, values = zip(*points)
        plt.figure()
        plt.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        plt.plot(steps, smooth(list(values)), color="#1f77b4", label="smoothed")
        plt.title(f"training {key} of {save_dir}")
        plt.xlabel("step")
        plt.ylabel(key)
        plt.legend()
        path = os.path.join(save_dir, f"training_{key}.png")
        plt.savefig(path, format="png", dpi=100)
        plt.close()
        written.append(path)
        logger.info(f"Figure saved at: {path}")
    return written


def plot_horizon(report: dict[str, Any], output_dir: str) -> str | None:
    """`eval_horizon.png`: rollout MSE per horizon, model and baselines (log scale)."""
    horizons = {int(h): r for h, r in report["rollout"]["horizons"].items() if "model" in r}
    if not horizons:
        return None
    plt = _pyplot()
    steps = sorted(horizons)
    plt.figure(figsize=(6, 4))
    for name in ("model",) + BASELINES:
        plt.plot(steps, [horizons[h][name]["mse"] for h in steps], marker="o", label=name,
                 linewidth=2.5 if name == "model" else 1.2)
    plt.yscale("log")
    plt.xlabel("horizon (groups after the context)")
    plt.ylabel("MSE")
    plt.title("rollout error by horizon")
    plt.xticks(steps)
    plt.legend()
    plt.tight_layout()
    path = os.path.join(output_dir, "eval_horizon.png")
    plt.savefig(path, dpi=100)
    plt.close()
    return path


def plot_trajectories(trajectories: list[dict[str, Any]], output_dir: str) -> str | None:
    """`eval_trajectories.png`: for a few rows, the true vector stream and the generated one, projected on the
    first two principal components of the true vectors shown."""
    if not trajectories:
        return None
    plt = _pyplot()
    true_all = np.concatenate([t["true"] for t in trajectories])
    center = true_all.mean(axis=0)
    _, _, components = np.linalg.svd(true_all - center, full_matrices=False)
    basis = components[:2].T if components.shape[0] >= 2 else np.eye(true_all.shape[1])[:, :2]
    plt.figure(figsize=(6, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, t in enumerate(trajectories):
        color = colors[number % len(colors)]
        true = (t["true"] - center) @ basis
        predicted = (t["predicted"] - center) @ basis
        start = t["origin"]
        plt.plot(true[:, 0], true[:, 1], "-o", color=color, markersize=3, label=f"row {t['row']} true")
        plt.plot(np.r_[true[start:start + 1, 0], predicted[:, 0]], np.r_[true[start:start + 1, 1], predicted[:, 1]],
                 "--x", color=color, markersize=4, label=f"row {t['row']} rollout")
    plt.xlabel("PC 1")
    plt.ylabel("PC 2")
    plt.title("true vs rolled-out trajectories")
    plt.legend(fontsize=7)
    plt.tight_layout()
    path = os.path.join(output_dir, "eval_trajectories.png")
    plt.savefig(path, dpi=100)
    plt.close()
    return path
