"""`wmfactory eval`: score teacher-forced and rollout predictions against the baselines; the table, the JSON
results and two pictures."""

import os
from typing import Any, Union

import numpy as np

from ..eval.plots import plot_horizon, plot_pit, plot_trajectories
from ..eval.report import evaluate_rows, format_report, save_report
from ..hparams import get_predict_args
from ..model.generation import generate_groups, vector_stream
from .common import load_model_and_rows, sampling_of


def run_eval(args: Union[dict[str, Any], list[str], None] = None) -> dict[str, Any]:
    """Writes `eval_results.json`, `eval_horizon.png` and `eval_trajectories.png` (and with `num_samples`, the
    distribution scores and `eval_pit.png`; over several datasets, each dataset's scores and the geometric mean of
    their scale-free scores); prints the table."""
    parsed = get_predict_args(args)
    model, dataset, output_dir = load_model_and_rows(parsed)
    context_groups = parsed.inference.context_groups
    report = evaluate_rows(model, dataset, context_groups, sampling_of(parsed))
    save_report(report, os.path.join(output_dir, "eval_results.json"))
    print(format_report(report))
    plot_horizon(report, output_dir)
    plot_pit(report, output_dir)
    plot_trajectories(_trajectories(model, dataset, context_groups, parsed.inference.plot_rows), output_dir)
    return report


def _trajectories(model, dataset, context_groups: int, plot_rows: int) -> list[dict[str, Any]]:
    trajectories = []
    for features in dataset:
        if len(trajectories) >= plot_rows or context_groups == 0:
            break
        generated = generate_groups(model, features, context_groups)
        if not generated or generated[0].vector_indices[0] == 0:
            continue
        trajectories.append({"row": features["row_index"], "true": vector_stream(features),
                             "predicted": np.concatenate([g.predicted for g in generated]),
                             "origin": generated[0].vector_indices[0] - 1})
    return trajectories
