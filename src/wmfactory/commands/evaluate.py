"""`wmfactory eval`: score teacher-forced and rollout predictions against the baselines; the table, the JSON
results and two pictures."""

import os
from typing import Any, Union

import numpy as np

from ..eval.plots import plot_horizon, plot_pit, plot_trajectories
from ..eval.report import evaluate_rows, format_report, save_report
from ..extras.atomic import remove_partials
from ..hparams import get_predict_args
from ..inference import generate_groups, stream_sequence, vector_stream
from ..train.lock import output_dir_lock
from .common import fit_rows, load_model_and_rows, long_rows_of, sampling_of


def run_eval(args: Union[dict[str, Any], list[str], None] = None) -> dict[str, Any]:
    """Writes `eval_results.json`, `eval_horizon.png` and `eval_trajectories.png` (and with `num_samples`, the
    distribution scores and `eval_pit.png`; over several datasets, each dataset's scores and the geometric mean of
    their scale-free scores); prints the table."""
    parsed = get_predict_args(args)
    with output_dir_lock(parsed.training.output_dir, command="eval run"):
        return _run_eval(parsed)


def _run_eval(parsed) -> dict[str, Any]:
    model, dataset, output_dir = load_model_and_rows(parsed)
    remove_partials(output_dir)
    context_groups = parsed.inference.context_groups
    report = evaluate_rows(model, dataset, context_groups, sampling_of(parsed),
                           parsed.training.per_device_eval_batch_size, parsed.inference.seasonality,
                           parsed.inference.levels, long_rows_of(parsed, model, "eval"),
                           parsed.inference.extra_baselines)
    save_report(report, os.path.join(output_dir, "eval_results.json"))
    print(format_report(report))
    plot_horizon(report, output_dir)
    plot_pit(report, output_dir)
    plot_trajectories(_trajectories(model, dataset, context_groups, parsed.inference.plot_rows,
                                    long_rows_of(parsed, model, "eval")), output_dir)
    return report


def _trajectories(model, dataset, context_groups: int, plot_rows: int, long_rows) -> list[dict[str, Any]]:
    """Rollouts of the first predicted stream against its true vectors (a model's other streams are not drawn), each
    row cut as the scores cut it (`long_rows`, whose warning the scores gave)."""
    trajectories = []
    stream = model.config.predicted_streams[0]
    for features in dataset:
        if len(trajectories) >= plot_rows or context_groups == 0:
            break
        [features], [context] = fit_rows(long_rows, [features], context_groups)
        generated = [g for g in generate_groups(model, features, context)
                     if model.config.model_stream(g.stream) == stream]
        if not generated:
            continue
        names = [model.config.model_stream(name) for name in stream_sequence(features)]
        mine = [i for i, name in enumerate(names) if name == stream]
        origin = mine.index(generated[0].vector_indices[0]) - 1
        if origin < 0:
            continue
        true = vector_stream(features, model.config.embedding_dim)[mine][:, : model.config.stream_dims.get(
            stream, model.config.embedding_dim)]
        trajectories.append({"row": features["row_index"], "true": true,
                             "predicted": np.concatenate([g.predicted for g in generated]), "origin": origin})
    return trajectories
