"""Evaluation of a world model on rows: teacher-forced and rollout (per horizon), beside the baselines."""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
from tqdm.auto import tqdm

from ..model.generation import Sampling, generate_groups, teacher_forced, vector_stream
from ..model.heads import DeterministicHead
from .metrics import (
    BASELINES,
    DISTRIBUTION_METRICS,
    METRICS,
    baseline_forecasts,
    baseline_samples,
    distribution_metrics,
    forecast_metrics,
    skill,
)


@dataclass
class _Pool:
    """Vectors scored together (one mode, one horizon)."""

    rows: list[int] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    forecasts: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    samples: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))  # [S, d] each
    excluded: int = 0

    def add(self, row: int, target: np.ndarray, model: np.ndarray, baselines: dict[str, np.ndarray],
            samples: Optional[dict[str, np.ndarray]] = None) -> None:
        self.rows.append(row)
        self.target.append(target)
        self.forecasts["model"].append(model)
        for name, value in baselines.items():
            self.forecasts[name].append(value)
        for name, value in (samples or {}).items():
            self.samples[name].append(value)

    def score(self) -> dict[str, Any]:
        result: dict[str, Any] = {"vectors": len(self.target), "excluded_vectors": self.excluded}
        if not self.target:
            return result
        rows, target = np.asarray(self.rows), np.stack(self.target)
        for name in ("model",) + BASELINES:
            result[name] = forecast_metrics(np.stack(self.forecasts[name]), target, rows)
        result["skill"] = skill(result["model"]["mse"], result["persistence"]["mse"])
        if self.samples:
            result["num_samples"] = len(self.samples["model"][0])
            for name in ("model",) + BASELINES:
                result[name].update(distribution_metrics(np.stack(self.samples[name]), target))
        return result


def evaluate_rows(model, rows: Iterable[dict[str, Any]], context_groups: int = 1,
                  sampling: Optional[Sampling] = None) -> dict[str, Any]:
    """`rows`: preprocessed features (as the data pipeline writes them). A vector is scored only where every
    baseline is defined (max(2, ridge_history) known vectors before it); the others are `excluded_vectors`. With
    `sampling`, the model's draws and the baselines' distributions are scored too (`distribution_metrics`)."""
    statistics = model.statistics
    mean = statistics.mean.float().cpu().numpy()
    ridge = statistics.ridge.double().cpu().numpy()
    history = statistics.ridge_history
    known = max(2, history)  # vectors a forecast needs before it, for every baseline to be defined
    rng = np.random.default_rng(sampling.seed if sampling else 0)

    def add(pool: _Pool, number, stream, origin, index, predicted, drawn):
        points = baseline_forecasts(stream, origin, index, mean, ridge, history)
        samples = None
        if drawn is not None:
            samples = {"model": drawn, **baseline_samples(points, index - origin, statistics, len(drawn), rng)}
        pool.add(number, stream[index], predicted, points, samples)

    forced = _Pool()
    horizons: dict[int, _Pool] = defaultdict(_Pool)
    for number, features in enumerate(tqdm(rows, desc="eval", unit="row")):
        stream = vector_stream(features)
        for group in teacher_forced(model, features, sampling):
            for j, (predicted, index) in enumerate(zip(group.predicted, group.vector_indices)):
                if index < known:
                    forced.excluded += 1
                    continue
                add(forced, number, stream, index - 1, index, predicted,
                    None if group.samples is None else group.samples[:, j])
        generated = generate_groups(model, features, context_groups, sampling) if context_groups > 0 else []
        origin = generated[0].vector_indices[0] - 1 if generated else -1  # the last given vector
        for group in generated:
            for j, (predicted, index) in enumerate(zip(group.predicted, group.vector_indices)):
                if origin < known - 1:
                    horizons[group.horizon].excluded += 1
                    continue
                add(horizons[group.horizon], number, stream, origin, index, predicted,
                    None if group.samples is None else group.samples[:, j])
    return {
        "distributional_head": not isinstance(model.prediction_head, DeterministicHead),
        "teacher_forced": forced.score(),
        "rollout": {"context_groups": context_groups,
                    "horizons": {str(h): horizons[h].score() for h in sorted(horizons)}},
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: one block per mode/horizon, one line per forecaster. A block where nothing could be
    scored is left out (`eval_results.json` keeps it, with its count of excluded vectors)."""
    model_is_distributional = report.get("distributional_head", False)
    lines = []
    blocks = [("teacher-forced", report["teacher_forced"])] + [
        (f"rollout h={h} (context {report['rollout']['context_groups']} group(s))", result)
        for h, result in report["rollout"]["horizons"].items()
    ]
    for title, result in blocks:
        if "model" not in result:  # nothing scored (every vector lacked the history the baselines need)
            continue
        lines.append(f"{title}: {result['vectors']} vectors scored, {result['excluded_vectors']} excluded")
        lines.append(f"  {'':22}" + "".join(f"{name.replace('_accuracy', ''):>12}" for name in METRICS))
        for name in ("model",) + BASELINES:
            lines.append(f"  {name:22}" + "".join(_cell(result[name][m]) for m in METRICS))
        verdict = "beats" if result["skill"] > 0 else "does NOT beat"
        lines.append(f"  skill vs persistence: {result['skill']:.4f} (the model {verdict} persistence)")
        if result["ridge"]["mse"] <= result["model"]["mse"]:
            lines.append("  the model does NOT beat the ridge regression on the last vectors (a linear model "
                         "fitted on the training split)")
        best = min(BASELINES, key=lambda b: result[b]["mse"])
        if result[best]["mse"] <= result["model"]["mse"]:
            lines.append(f"  the best baseline ({best}) has lower MSE than the model")
        if "num_samples" in result:
            lines.append(f"  as distributions ({result['num_samples']} samples; lower crps and energy score are "
                         "better, calibrated coverage is 0.5 and 0.9):")
            lines.append(f"  {'':22}" + "".join(f"{name:>13}" for name in DISTRIBUTION_METRICS))
            for name in ("model",) + BASELINES:
                lines.append(f"  {name:22}" + "".join(f" {_cell(result[name][m])}" for m in DISTRIBUTION_METRICS))
            if not model_is_distributional:
                lines.append("  the head is deterministic: its samples are its mean, so its CRPS is its MAE")
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{'n/a':>12}" if value is None else f"{value:>12.5g}"


def save_report(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
