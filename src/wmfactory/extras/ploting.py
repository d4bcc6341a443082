"""Loss curves from `trainer_state.json`, drawn with matplotlib (no display needed)."""

import json
import math
import os

from .logging import get_logger

logger = get_logger(__name__)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
