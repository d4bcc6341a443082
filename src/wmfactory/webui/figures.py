"""The board's pictures, drawn on matplotlib `Figure` objects (no pyplot state, so actions running side by side
on the queue do not share a figure) and saved as PNG, which the page shows and offers for download."""

from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from .runs import CURVE_KEYS

TRUE, FACTUAL, COUNTERFACTUAL = "black", "tab:blue", "tab:orange"


def save_png(figure: Figure, path: str) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return path


def curves_figure(runs: dict[str, list[dict[str, Any]]], keys: Optional[tuple[str, ...]] = None) -> Figure:
    """One panel per logged key (loss, each loss part, learning rate, evaluation metrics), a line per run, against
    the step."""
    keys = keys or tuple(k for k in CURVE_KEYS if any(k in r for records in runs.values() for r in records))
    keys = keys or ("loss",)
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    figure = Figure(figsize=(4.2 * columns, 2.8 * rows))
    for i, key in enumerate(keys):
        axis = figure.add_subplot(rows, columns, i + 1)
        for name, records in runs.items():
            points = [(r["current_steps"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, marker="." if len(points) < 30 else None, label=name)
        axis.set_title(key)
        axis.set_xlabel("step")
        if key.endswith(("loss", "mse")) and _positive(axis):
            axis.set_yscale("log")
        if len(runs) > 1:
            axis.legend(fontsize=7)
    return figure


def _positive(axis) -> bool:
    values = [v for line in axis.get_lines() for v in line.get_ydata()]
    return bool(values) and min(values) > 0


def rollout_figure(panels: list[dict[str, Any]], columns: int = 3) -> Figure:
    """One panel per (stream, dimension): the true vectors (context solid, future dashed), the factual rollout
    and the counterfactual one, each a line, or with samples a median line and 50% / 90% bands (a fan chart).
    A panel: `{"title", "context" [c], "future" [f], "start" (index of the first rollout vector), "factual":
    {"mean" [n]} or {"samples" [S, n]}, "counterfactual": same or None}`."""
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * min(columns, len(panels)), 2.8 * rows))
    for i, panel in enumerate(panels):
        axis = figure.add_subplot(rows, min(columns, len(panels)), i + 1)
        start = panel["start"]
        context, future = np.asarray(panel["context"]), np.asarray(panel["future"])
        axis.plot(np.arange(len(context)), context, color=TRUE, marker="o", markersize=4, label="true (context)",
                  zorder=3)
        if len(future):
            axis.plot(start + np.arange(len(future)), future, color=TRUE, linestyle="--", marker="o", markersize=4,
                      fillstyle="none", label="true (future)", zorder=3)
        for name, color in (("factual", FACTUAL), ("counterfactual", COUNTERFACTUAL)):
            if panel.get(name) is not None:
                _trajectory(axis, start, panel[name], color, name)
        axis.set_title(panel["title"], fontsize=9)
        axis.set_xlabel("vector of the stream")
        if i == 0:
            axis.legend(fontsize=7)
    return figure


def _trajectory(axis, start: int, trajectory: dict[str, np.ndarray], color: str, label: str) -> None:
    if "samples" in trajectory:
        samples = np.asarray(trajectory["samples"])  # [S, n]
        x = start + np.arange(samples.shape[1])
        q05, q25, q50, q75, q95 = np.quantile(samples, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        axis.fill_between(x, q05, q95, color=color, alpha=0.15, label=f"{label} 90%")
        axis.fill_between(x, q25, q75, color=color, alpha=0.3, label=f"{label} 50%")
        axis.plot(x, q50, color=color, marker=".", label=f"{label} median")
    else:
        mean = np.asarray(trajectory["mean"])
        axis.plot(start + np.arange(len(mean)), mean, color=color, marker=".", label=label)


def series_figure(series: dict[str, np.ndarray], title: str, xlabel: str, goal: Optional[dict] = None) -> Figure:
    """One panel per named `[n, d]` series, a line per dimension (with the goal value dotted, when given)."""
    figure = Figure(figsize=(4.5 * len(series), 3))
    for i, (name, values) in enumerate(series.items()):
        axis = figure.add_subplot(1, len(series), i + 1)
        values = np.asarray(values)
        values = values[:, None] if values.ndim == 1 else values
        for j in range(values.shape[1]):
            line, = axis.plot(np.arange(1, len(values) + 1), values[:, j], marker=".", label=f"{name}[{j}]")
            if goal and name in goal and j < len(goal[name]):
                axis.axhline(goal[name][j], color=line.get_color(), linestyle=":")
        axis.set_title(f"{title}: {name}" if title else name, fontsize=9)
        axis.set_xlabel(xlabel)
        if values.shape[1] <= 8:
            axis.legend(fontsize=7)
    return figure
