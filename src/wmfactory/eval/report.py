"""Evaluation of a world model on rows: teacher-forced and rollout (per horizon), beside the baselines."""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..extras.errors import ConfigError
from ..extras.logging import get_logger
from ..model.statistics import ridge_sub_block
from ..inference.history import LongRows
from ..inference import (
    Sampling,
    generate_rows,
    row_batches,
    stream_sequence,
    teacher_forced_rows,
    vector_stream,
)
from .datasets import format_datasets, geometric_means
from .metrics import (
    DISTRIBUTION_METRICS,
    METRICS,
    QUANTILE_LEVELS,
    DistributionScores,
    baseline_forecasts,
    baseline_samples,
    condition_histories,
    forecast_metrics,
    forecasters_of,
    forward_filled,
    ridge_conditions_path,
    seasonal_errors,
    seasonal_scale,
    skill,
)
from .statistical import MAX_DIMS, MIN_HISTORY, STATSFORECAST_BASELINES, require_statsforecast, statistical_forecasts

logger = get_logger(__name__)

RELATIVE_SCORES = ("mse", "mase", "crps", "wql")  # given relative to seasonal naive for every forecaster


@dataclass
class _Pool:
    """Vectors scored together (one mode, one horizon), each with the dataset it comes from. The points are kept
    (the contrastive accuracy compares every prediction with every target); samples are scored as they come, into
    sums per dataset (`DistributionScores`), and not kept."""

    rows: list[int] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    scales: list[np.ndarray] = field(default_factory=list)  # MASE's scale of each vector `[d]` (NaN: none)
    quantile_levels: tuple = QUANTILE_LEVELS
    target: list[np.ndarray] = field(default_factory=list)
    forecasts: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    samples: dict[str, dict[str, DistributionScores]] = field(default_factory=dict)  # dataset -> forecaster -> sums
    excluded: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # dataset -> vectors not scored

    def add(self, row: int, target: np.ndarray, model: np.ndarray, baselines: dict[str, np.ndarray],
            samples: Optional[dict[str, np.ndarray]] = None, dataset: str = "",
            scale: Optional[np.ndarray] = None) -> None:
        """`samples`: `[S, d]` draws of each forecaster, scored at once. `scale` `[d]`: MASE's scale of the vector
        (the in-sample seasonal naive error of its row's known part, per dimension; None: none)."""
        self.rows.append(row)
        self.scales.append(np.full(len(target), np.nan) if scale is None else np.asarray(scale, dtype=np.float64))
        self.datasets.append(dataset)
        self.target.append(target)
        self.forecasts["model"].append(model)
        for name, value in baselines.items():
            self.forecasts[name].append(value)
        for name, value in (samples or {}).items():
            self.samples.setdefault(dataset, {}).setdefault(
                name, DistributionScores(self.quantile_levels)).add(value, target)

    def exclude(self, dataset: str = "") -> None:
        """Count a vector that could not be scored."""
        self.excluded[dataset] += 1

    def dataset_names(self) -> list[str]:
        return list(dict.fromkeys(self.datasets + list(self.excluded)))

    def score(self, dataset: Optional[str] = None) -> dict[str, Any]:
        """Scores of every vector, or of those of `dataset`."""
        keep = [dataset is None or name == dataset for name in self.datasets]
        excluded = sum(self.excluded.values()) if dataset is None else self.excluded.get(dataset, 0)
        result: dict[str, Any] = {"vectors": sum(keep), "excluded_vectors": excluded}
        if not any(keep):
            return result

        def stacked(values):
            return np.stack([value for value, kept in zip(values, keep) if kept])

        rows, target = stacked(self.rows), stacked(self.target)
        forecasters = forecasters_of(self.forecasts)
        for name in forecasters:
            result[name] = forecast_metrics(stacked(self.forecasts[name]), target, rows)
        for name in forecasters:  # scale-free, as MASE: the MSE in units of the persistence MSE
            result[name]["relative_mse"] = result[name]["mse"] / max(result["persistence"]["mse"], 1e-30)
        scales = stacked(self.scales)  # [n, d]
        scaled = np.isfinite(scales) & (scales > 0)
        scaled &= ~np.isnan(target)  # missing entries (`missing_values: mask`) are not scored
        result["mase_values"] = int(scaled.sum())
        for name in forecasters:  # each absolute error over its row's scale in that dimension
            errors = np.abs(stacked(self.forecasts[name]) - target)
            result[name]["mase"] = float(np.mean(errors[scaled] / scales[scaled])) if scaled.any() else None
        result["skill"] = skill(result["model"]["mse"], result["persistence"]["mse"])
        parts = [scores for name, scores in self.samples.items() if dataset is None or name == dataset]
        if parts:
            for name in forecasters:
                total = DistributionScores(self.quantile_levels)
                for scores in parts:
                    total.merge(scores[name])
                result[name].update(total.result())
            result["num_samples"] = total.num_samples
            result["quantile_levels"] = list(self.quantile_levels)
        for name in forecasters:
            result[name]["relative_to_seasonal_naive"] = {
                score: _ratio(result[name].get(score), result["seasonal_naive"].get(score))
                for score in RELATIVE_SCORES if score in result[name]}
        return result


def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


@dataclass
class _RowStreams:
    """A row's vectors split by stream: the vectors of each stream `[n_s, d_s]` in reading order, and the place of
    each of the row's vectors within its stream's."""

    vectors: dict[str, np.ndarray]
    local: list[int]
    filled: dict[str, np.ndarray] = field(default_factory=dict)  # the baselines' inputs: missing entries filled
    conditions: dict[str, np.ndarray] = field(default_factory=dict)  # per stream, `condition_histories` of its vectors

    @classmethod
    def of(cls, model, features: dict[str, Any]) -> "_RowStreams":
        cfg = model.config
        all_vectors = vector_stream(features, cfg.embedding_dim)
        names = [cfg.model_stream(name) for name in stream_sequence(features)]
        indices: dict[str, list[int]] = defaultdict(list)
        local = []
        for i, name in enumerate(names):
            local.append(len(indices[name]))
            indices[name].append(i)
        dims = cfg.stream_dims
        vectors = {name: all_vectors[idx][:, : dims.get(name, all_vectors.shape[1])] for name, idx in indices.items()}
        filled = {name: forward_filled(stream, model.stream_part("statistics", name).mean.double().cpu().numpy())
                  if np.isnan(stream).any() and not cfg.is_condition(name) else stream
                  for name, stream in vectors.items()}
        conditions = {}
        if cfg.frame_conditions:  # the ridge frame reads the condition streams: so does the `ridge_conditions` baseline
            for name in vectors:
                if not cfg.is_condition(name):
                    conditions[name] = condition_histories(names, all_vectors, name, cfg.frame_conditions,
                                                           cfg.ridge_history)
        return cls(vectors, local, filled, conditions)


def evaluate_rows(model, rows: Iterable[dict[str, Any]], context_groups: int = 1,
                  sampling: Optional[Sampling] = None, batch_size: int = 8, seasonality: int = 1,
                  quantile_levels=QUANTILE_LEVELS, long_rows: Optional[LongRows] = None,
                  baselines: Sequence[str] = ()) -> dict[str, Any]:
    """`rows`: preprocessed features (as the data pipeline writes them). Each predicted stream is scored on its own,
    and every baseline is computed inside the stream (persistence is the previous vector of the stream, the ridge
    and the training mean are the stream's). A vector is scored only where every baseline is defined
    (max(2, the ridge's history) known vectors of its stream before it); the others are `excluded_vectors`. With
    `sampling`, the model's draws and the baselines' distributions are scored too (`metrics.DistributionScores`).
    A model of several streams reports each predicted stream under `streams` (and, when only one stream is
    predicted, its scores at the top level as well). The model runs on `batch_size` rows at a time.

    Seasonal naive repeats the last known vector of the same season (`seasonality` m; 1 is persistence); MASE
    divides each absolute error by its row's in-sample seasonal naive error in that dimension, on the vectors
    known at the forecast's origin; WQL (with `sampling`) is the weighted quantile loss at `quantile_levels`, from the
    quantiles of the draws; every forecaster's scores are also given relative to seasonal naive's.

    `long_rows` fits each row into the model's positions (and its `context_length`) before anything reads it: the
    history before the rollouts (the first `context_groups` groups) is cut to its last groups, and the teacher-forced
    scores and the baselines read the same cut row (default: cut only where a row does not fit, with a warning).

    `baselines` `("statsforecast",)` adds AutoETS and AutoARIMA (`eval.statistical`) to the rollouts of every
    predicted stream of at most `MAX_DIMS` dimensions (a wider stream is skipped with a warning; an error where every
    stream is wider): each fitted once per row and stream, per dimension, on the history up to the rollout's origin
    (as the other baselines read it, missing entries filled), with `seasonality` as the season. A rollout whose
    origin has fewer than `MIN_HISTORY` known vectors is not scored (counted in the report's `statsforecast`
    block). The teacher-forced scores have none of them (a fit per vector)."""
    cfg = model.config
    streams = cfg.predicted_streams
    statistics = {name: model.stream_part("statistics", name) for name in streams}
    # the ridge's history: the one chosen on held-out training rows (`ridge_select`; the weights on the older
    # vectors are then zeros), else `ridge_history`
    history = {name: int(cfg.ridge_choice.get(name, {}).get("history", cfg.ridge_history)) for name in streams}
    ridges = {name: _ridge_weights(statistics[name].ridge, history[name]) for name in streams}
    # with `ridge_conditions`, the frame's ridge that also reads the condition streams (`ridge_conditions` baseline)
    frame_history = {name: int(cfg.ridge_choice.get(name, {}).get("frame_history", cfg.ridge_history))
                     for name in streams} if cfg.frame_conditions else {}
    frame_ridges = {name: statistics[name].frame_ridge_on(frame_history[name]).double().cpu().numpy()
                    for name in frame_history}
    # vectors a forecast needs before it, for every baseline to be defined
    # (seasonal naive and MASE's scale need m + 1)
    known_of = {name: max(2, history[name], frame_history.get(name, 0), seasonality + 1) for name in streams}
    rng = np.random.default_rng(sampling.seed if sampling else 0)
    statistical, too_wide = _statistical_streams(cfg, streams, baselines)
    # the statistical baselines draw from a generator of their own: the other baselines' draws stay as without them
    statistical_rng = np.random.default_rng([sampling.seed if sampling else 0, 1])
    statistical_excluded = {name: 0 for name in statistical}

    def add(pool: _Pool, number, name, row, origin, index, predicted, drawn, dataset, fitted=None):
        stats, vectors = statistics[name], row.vectors[name]
        # the baselines read the history with its missing entries filled (`forward_filled`); the scores read the
        # observed entries only
        points = baseline_forecasts(row.filled[name], origin, index, stats.mean.float().cpu().numpy(), ridges[name],
                                    history[name], seasonality)
        if name in row.conditions:
            j = frame_history[name]
            points["ridge_conditions"] = ridge_conditions_path(
                frame_ridges[name], row.filled[name][origin - j + 1: origin + 1],
                row.conditions[name][origin + 1: index + 1, :j])[-1]
        samples = None
        if drawn is not None:
            seasonal_std = np.sqrt((seasonal_errors(row.filled[name], origin, seasonality) ** 2).mean(0))
            samples = {"model": drawn, **baseline_samples(points, index - origin, stats, len(drawn), rng,
                                                          seasonal_std, seasonality)}
        for model_name, (means, stds) in (fitted or {}).items():  # Gaussian, with the model's interval's spread
            points[model_name] = means[index - origin - 1]
            if samples is not None:
                samples[model_name] = points[model_name] + stds[index - origin - 1] * statistical_rng.standard_normal(
                    (len(drawn), len(points[model_name])))
        pool.add(number, vectors[index], predicted, points, samples, dataset,
                 seasonal_scale(vectors, origin, seasonality))

    levels = tuple(quantile_levels)
    forced = {name: _Pool(quantile_levels=levels) for name in streams}
    horizons: dict[str, dict[int, _Pool]] = {name: defaultdict(lambda: _Pool(quantile_levels=levels))
                                             for name in streams}
    long_rows = long_rows or LongRows(model, what="eval")
    for number, features, forced_groups, generated in _predictions(model, rows, context_groups, sampling, batch_size,
                                                                   long_rows):
        row, dataset = _RowStreams.of(model, features), features["dataset_name"]
        for group in forced_groups:
            name = cfg.model_stream(group.stream)
            for j, (predicted, index) in enumerate(zip(group.predicted, group.vector_indices)):
                k = row.local[index]
                if k < known_of[name]:
                    forced[name].exclude(dataset)
                    continue
                add(forced[name], number, name, row, k - 1, k, predicted,
                    None if group.samples is None else group.samples[:, j], dataset)
        origins, steps = {}, defaultdict(int)  # per stream, the last given vector before its first generated one
        for group in generated:
            name = cfg.model_stream(group.stream)
            origins.setdefault(name, row.local[group.vector_indices[0]] - 1)
            steps[name] = max(steps[name], row.local[group.vector_indices[-1]] - origins[name])
        where = f" in row {features.get('row_index', number)} of {dataset}"
        fitted = {name: statistical_forecasts(row.filled[name][: origins[name] + 1], steps[name], seasonality,
                                              f" of stream '{name}'{where}")
                  for name in origins if name in statistical and origins[name] >= max(known_of[name], MIN_HISTORY) - 1}
        for group in generated:
            name = cfg.model_stream(group.stream)
            for j, (predicted, index) in enumerate(zip(group.predicted, group.vector_indices)):
                if origins[name] < known_of[name] - 1:
                    horizons[name][group.horizon].exclude(dataset)
                    continue
                if name in statistical and name not in fitted:  # too short a history for AutoETS
                    horizons[name][group.horizon].exclude(dataset)
                    statistical_excluded[name] += 1
                    continue
                add(horizons[name][group.horizon], number, name, row, origins[name],
                    row.local[index], predicted, None if group.samples is None else group.samples[:, j], dataset,
                    fitted.get(name))
    distributional = any(model.stream_part("prediction_head", name).is_distributional for name in streams)
    reports = {name: pools_report(forced[name], horizons[name], context_groups) for name in streams}
    head: dict[str, Any] = {"distributional_head": distributional, "seasonality": seasonality}
    if "statsforecast" in baselines:
        head["statsforecast"] = {
            "baselines": list(STATSFORECAST_BASELINES), "max_dims": MAX_DIMS, "min_history": MIN_HISTORY,
            "streams": list(statistical), "excluded_vectors": statistical_excluded,
            "skipped_streams": too_wide}
    if cfg.sole_stream is not None:  # a model of one stream reports its scores at the top level only
        return {**head, **reports[streams[0]]}
    report: dict[str, Any] = {**head, "streams": reports}
    if len(streams) == 1:
        report.update(reports[streams[0]])
    return report


def _statistical_streams(cfg, streams: list[str], baselines: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """(the predicted streams the statsforecast baselines are fitted on, `{stream: dimension}` of those skipped):
    none without `baselines: statsforecast`; else those of at most `MAX_DIMS` dimensions, the others named in one
    warning (an error when none is left)."""
    if "statsforecast" not in baselines:
        return [], {}
    require_statsforecast()
    wide = {name: cfg.stream_dims[name] for name in streams if cfg.stream_dims[name] > MAX_DIMS}
    listed = ", ".join(f"'{name}' ({d})" for name, d in wide.items())
    if len(wide) == len(streams):
        raise ConfigError(f"`baselines: statsforecast` fits AutoETS and AutoARIMA on each dimension of a stream of at "
                          f"most {MAX_DIMS} dimensions; the predicted stream(s) are wider: {listed}.")
    if wide:
        logger.warning(f"`baselines: statsforecast`: stream(s) wider than {MAX_DIMS} dimensions skipped (no auto_ets "
                       f"or auto_arima there): {listed}.")
    return [name for name in streams if name not in wide], wide


def _ridge_weights(ridge: torch.Tensor, history: int) -> np.ndarray:
    """The weights `[k*d + 1, d]` of a ridge on the last k vectors, cut to those of the last `history` <= k."""
    w = ridge.double().cpu().numpy()
    d = w.shape[1]
    return w[ridge_sub_block(history, (len(w) - 1) // d, d, 0)]


def _predictions(model, rows: Iterable[dict[str, Any]], context_groups: int, sampling: Optional[Sampling],
                 batch_size: int, long_rows: LongRows) -> Iterator[tuple[int, dict[str, Any], list, list]]:
    """(row number, features cut by `long_rows`, teacher-forced groups, generated groups) of each row, the rows run
    in batches."""
    total = len(rows) if hasattr(rows, "__len__") else None
    number = 0
    with tqdm(total=total, desc="eval", unit="row") as bar:
        for batch in row_batches(rows, batch_size):
            cut = [long_rows.fit(features, history=context_groups or None) for features in batch]
            batch = [features for features, _ in cut]
            forced = teacher_forced_rows(model, batch, sampling)
            contexts = [context_groups - dropped for _, dropped in cut]
            generated = generate_rows(model, batch, contexts, sampling) if context_groups > 0 else [
                [] for _ in batch]
            for features, forced_groups, generated_groups in zip(batch, forced, generated):
                yield number, features, forced_groups, generated_groups
                number += 1
            bar.update(len(batch))
    long_rows.warn()


def pools_report(forced: _Pool, horizons: dict[int, _Pool], context_groups: int) -> dict[str, Any]:
    """The scores of every vector; over several datasets, also each dataset's (`datasets`) and the geometric mean
    of their scale-free scores (`geometric_mean`)."""
    report = _scores(forced, horizons, context_groups)
    names = list(dict.fromkeys(forced.dataset_names() + [n for h in horizons.values() for n in h.dataset_names()]))
    if len(names) > 1:
        report["datasets"] = {name: _scores(forced, horizons, context_groups, name) for name in names}
        report["geometric_mean"] = geometric_means(report["datasets"])
    return report


def _scores(forced: _Pool, horizons: dict[int, _Pool], context_groups: int,
            dataset: Optional[str] = None) -> dict[str, Any]:
    return {"teacher_forced": forced.score(dataset),
            "rollout": {"context_groups": context_groups,
                        "horizons": {str(h): horizons[h].score(dataset) for h in sorted(horizons)}}}


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: one block per mode/horizon, one line per forecaster, and one table per predicted
    stream for a model of several streams. A block where nothing could be scored is left out
    (`eval_results.json` keeps it, with its count of excluded vectors)."""
    if "streams" in report:
        parts = []
        for name, scores in report["streams"].items():
            parts.append(f"== stream '{name}' (baselines computed inside the stream) ==")
            parts.append(format_report({"distributional_head": report.get("distributional_head", False),
                                        "seasonality": report.get("seasonality", 1), **scores}))
        return "\n".join(parts + _statistical_note(report))
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
        lines.append(f"  {'':22}" + "".join(f"{name.replace('_accuracy', ''):>12}" for name in METRICS)
                     + f"{'rel_mse':>12}{'mase':>12}")
        for name in forecasters_of(result):
            lines.append(f"  {name:22}" + "".join(_cell(result[name].get(m)) for m in
                                                  METRICS + ("relative_mse", "mase")))
        verdict = "beats" if result["skill"] > 0 else "does NOT beat"
        lines.append(f"  skill vs persistence: {result['skill']:.4f} (the model {verdict} persistence)")
        if result["ridge"]["mse"] <= result["model"]["mse"]:
            lines.append("  the model does NOT beat the ridge regression on the last vectors (a linear model "
                         "fitted on the training split)")
        best = min(forecasters_of(result)[1:], key=lambda b: result[b]["mse"])
        if result[best]["mse"] <= result["model"]["mse"]:
            lines.append(f"  the best baseline ({best}) has lower MSE than the model")
        if "num_samples" in result:
            lines.append(f"  as distributions ({result['num_samples']} samples; lower crps and energy score are "
                         "better, calibrated coverage is 0.5 and 0.9):")
            lines.append(f"  {'':22}" + "".join(f"{name:>13}" for name in DISTRIBUTION_METRICS))
            for name in forecasters_of(result):
                lines.append(f"  {name:22}" + "".join(f" {_cell(result[name][m])}" for m in DISTRIBUTION_METRICS))
            if not model_is_distributional:
                lines.append("  the head is deterministic: its samples are its mean, so its CRPS is its MAE")
        scores = [score for score in RELATIVE_SCORES if score in result["model"]["relative_to_seasonal_naive"]]
        lines.append(f"  relative to seasonal naive (m = {report.get('seasonality', 1)}; below 1 beats it):")
        lines.append(f"  {'':22}" + "".join(f"{score:>12}" for score in scores))
        for name in forecasters_of(result):
            relative = result[name]["relative_to_seasonal_naive"]
            lines.append(f"  {name:22}" + "".join(_cell(relative[score]) for score in scores))
    if lines:
        lines.append("rel_mse: MSE / persistence MSE (scale-free; below 1 beats persistence); mase: mean absolute "
                     "error / the row's in-sample seasonal naive error, per dimension")
    if "datasets" in report:
        lines.extend(format_datasets(report))
    return "\n".join(lines + _statistical_note(report))


def _statistical_note(report: dict[str, Any]) -> list[str]:
    """What `baselines: statsforecast` fitted, and what it left out: the line under the table."""
    if "statsforecast" not in report:
        return []
    block = report["statsforecast"]
    excluded = sum(block["excluded_vectors"].values())
    line = (f"auto_ets, auto_arima (statsforecast): fitted per dimension on each row's history before its rollout "
            f"(rollouts only); {excluded} rollout vector(s) not scored, their origin having fewer than "
            f"{block['min_history']} known vectors")
    if block["skipped_streams"]:
        line += f"; stream(s) wider than {block['max_dims']} dimensions skipped: " + ", ".join(
            f"'{name}' ({d})" for name, d in block["skipped_streams"].items())
    return [line]


def _cell(value) -> str:
    return f"{'n/a':>12}" if value is None else f"{value:>12.5g}"


def save_report(report: dict[str, Any], path: str) -> None:
    from ..extras.atomic import write_json  # the old file or the new one, never half of one

    write_json(path, report, indent=2)
