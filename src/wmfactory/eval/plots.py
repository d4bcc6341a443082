"""Every picture wmfactory draws: the training curves (from `trainer_state.json`), and of an evaluation the error
against horizon and true vs predicted trajectories in a 2-D PCA view."""

import json
import math
import os
from typing import Any

import numpy as np

from ..extras.logging import get_logger
from .metrics import PIT_BINS, forecasters_of

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
    """Writes `training_<key>.png` for each key present in the log history; returns the written paths.
    `training_loss.png` shows the evaluation loss on the same axes when there is one. Short curves get markers;
    a curve that spans a factor of 10 or more gets a log-scale y-axis."""
    plt = _pyplot()
    with open(os.path.join(save_dir, "trainer_state.json"), encoding="utf-8") as f:
        history = json.load(f)["log_history"]

    def series(key):
        return [(entry["step"], entry[key]) for entry in history if key in entry]

    written = []
    for key in keys:
        points = series(key)
        if not points:
            logger.warning(f"No `{key}` in the log history: training_{key}.png not drawn.")
            continue
        plt.figure()
        curves = [(key, points, "#1f77b4")]
        if key == "loss" and series("eval_loss"):
            curves.append(("eval_loss", series("eval_loss"), "#d62728"))
        values_all = []
        for name, curve, color in curves:
            steps, values = zip(*curve)
            values_all.extend(values)
            marker = "o" if len(curve) <= 30 else None
            plt.plot(steps, values, color=color, alpha=0.4, marker=marker, label=f"{name} (original)")
            plt.plot(steps, smooth(list(values)), color=color, label=f"{name} (smoothed)")
        positive = [v for v in values_all if v > 0]
        if len(positive) == len(values_all) and max(positive) >= 10 * min(positive):
            plt.yscale("log")
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
    first = horizons[steps[0]]
    for name in forecasters_of(first):
        if name == "seasonal_naive" and report.get("seasonality", 1) == 1:
            continue  # with m = 1 it is persistence, drawn already
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


def plot_trajectories(trajectories: list[dict[str, Any]], output_dir: str, components: int = 3) -> str | None:
    """`eval_trajectories.png`: for a few rows, the true vector stream and the rollout from the end of the context,
    against the step, one small panel per principal component of the true vectors shown (the first
    `components`), so that high-dimensional streams stay readable."""
    if not trajectories:
        return None
    plt = _pyplot()
    true_all = np.concatenate([t["true"] for t in trajectories])
    center = true_all.mean(axis=0)
    _, _, basis = np.linalg.svd(true_all - center, full_matrices=False)
    count = min(components, basis.shape[0])
    figure, axes = plt.subplots(count, 1, figsize=(7, 2.2 * count + 0.6), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, t in enumerate(trajectories):
        color = colors[number % len(colors)]
        true = (t["true"] - center) @ basis[:count].T  # [steps, count]
        predicted = (t["predicted"] - center) @ basis[:count].T
        start = t["origin"]
        rollout_steps = np.arange(start, start + len(predicted) + 1)
        for component in range(count):
            ax = axes[component, 0]
            ax.plot(np.arange(len(true)), true[:, component], "-o", color=color, markersize=3,
                    label=f"row {t['row']} true" if component == 0 else None)
            ax.plot(rollout_steps, np.r_[true[start, component], predicted[:, component]], "--x", color=color,
                    markersize=4, label=f"row {t['row']} rollout" if component == 0 else None)
            ax.set_ylabel(f"PC {component + 1}")
    axes[-1, 0].set_xlabel("vector index in the row (rollout from the last given vector)")
    axes[0, 0].set_title("true vs rolled-out trajectories")
    axes[0, 0].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = os.path.join(output_dir, "eval_trajectories.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_pit(report: dict[str, Any], output_dir: str) -> str | None:
    """`eval_pit.png`: the model's PIT histogram (share of its samples below each true value), teacher-forced and
    per rollout horizon; a calibrated forecast is flat at 1 / bins, a too narrow one U-shaped, a too wide one
    peaked. Drawn when the evaluation drew samples."""
    blocks = [("teacher-forced", report["teacher_forced"])] + [
        (f"rollout h={h}", result) for h, result in report["rollout"]["horizons"].items()]
    blocks = [(title, result["model"]["pit"]) for title, result in blocks if "pit" in result.get("model", {})][:4]
    if not blocks:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(blocks), figsize=(3.2 * len(blocks), 3), squeeze=False, sharey=True)
    centers = (np.arange(PIT_BINS) + 0.5) / PIT_BINS
    for ax, (title, shares) in zip(axes[0], blocks):
        ax.bar(centers, shares, width=1 / PIT_BINS, edgecolor="white")
        ax.axhline(1 / PIT_BINS, color="black", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("PIT")
    axes[0, 0].set_ylabel("share of values")
    figure.tight_layout()
    path = os.path.join(output_dir, "eval_pit.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
