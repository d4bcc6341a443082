"""Several datasets evaluated together: each one's scale-free score (MSE relative to persistence, as MASE) and
their geometric mean, the figure Chronos and GIFT-Eval rank forecasters by."""

from typing import Any

import numpy as np

from .metrics import forecasters_of


def _blocks(scores: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(mode key, result) of one dataset's scores: `teacher_forced`, then each rollout horizon."""
    return [("teacher_forced", scores["teacher_forced"])] + list(scores["rollout"]["horizons"].items())


def geometric_means(per_dataset: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per mode (`teacher_forced`, and each rollout horizon under `rollout`): the geometric mean over the datasets
    scored in it of each forecaster's `relative_mse`, with the names of those datasets, and of each score relative
    to seasonal naive (`relative_to_seasonal_naive`: MSE, MASE and, with samples, CRPS and WQL), as GIFT-Eval
    ranks forecasters. An optional baseline (`OPTIONAL_BASELINES`) has its means where every dataset of the mode
    has it."""
    values: dict[str, dict[str, list[float]]] = {}
    relative: dict[str, dict[str, dict[str, list]]] = {}  # mode -> forecaster -> score -> values
    scored: dict[str, list[str]] = {}
    for dataset, scores in per_dataset.items():
        for mode, result in _blocks(scores):
            if "model" not in result:
                continue
            scored.setdefault(mode, []).append(dataset)
            for name in forecasters_of(result):
                values.setdefault(mode, {}).setdefault(name, []).append(result[name]["relative_mse"])
                for score, value in result[name].get("relative_to_seasonal_naive", {}).items():
                    relative.setdefault(mode, {}).setdefault(name, {}).setdefault(score, []).append(value)
    means = {mode: {"datasets": scored[mode],
                    **{name: _geometric_mean(v) for name, v in by_name.items() if len(v) == len(scored[mode])},
                    # each score relative to seasonal naive, where every dataset of the mode has it
                    "relative_to_seasonal_naive": {
                        name: {score: _geometric_mean(v) for score, v in by_score.items()
                               if len(v) == len(scored[mode]) and None not in v}
                        for name, by_score in relative.get(mode, {}).items()}}
             for mode, by_name in values.items()}
    return {"teacher_forced": means.pop("teacher_forced", {}), "rollout": means}


def _geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, 1e-300)))))


def format_datasets(report: dict[str, Any]) -> list[str]:
    """Lines of the per-dataset table: for each mode, one line per dataset and the geometric mean, one column per
    forecaster, of the scale-free score."""
    lines = ["per dataset: MSE / persistence MSE (scale-free); geometric mean over the datasets (and of MASE and "
             "WQL relative to seasonal naive's)"]
    means = report["geometric_mean"]
    for mode, mean in [("teacher_forced", means["teacher_forced"])] + list(means["rollout"].items()):
        if not mean:
            continue
        title = "teacher-forced" if mode == "teacher_forced" else f"rollout h={mode}"
        forecasters = forecasters_of(mean)
        columns = "".join(f"{name.replace('linear_extrapolation', 'linear_extrap.'):>15}" for name in forecasters)
        lines.append(f"  {title:22}{columns}")
        for dataset in mean["datasets"]:
            scores = report["datasets"][dataset]
            result = scores["teacher_forced"] if mode == "teacher_forced" else scores["rollout"]["horizons"][mode]
            lines.append(f"    {dataset:20}"
                         + "".join(f"{result[name]['relative_mse']:>15.4g}" for name in forecasters))
        lines.append(f"    {'geometric mean':20}" + "".join(f"{mean[name]:>15.4g}" for name in forecasters))
        relative = mean.get("relative_to_seasonal_naive", {})
        for score in ("mase", "wql"):
            if all(score in relative.get(name, {}) for name in forecasters):
                lines.append(f"    {'gm ' + score + ' / s. naive':20}"
                             + "".join(f"{relative[name][score]:>15.4g}" for name in forecasters))
    return lines
