"""`wmfactory plan`: for every row of a dataset, the action sequence after the row that brings the predicted states
closest to a goal (`WorldModel.plan` with the goal cost), written as `plans.jsonl` and one `.safetensors` per row."""

import json
import os
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from ..data.embeddings import load_embedding
from ..extras.atomic import staged_outputs
from ..extras.errors import ConfigError, DataError
from ..extras.logging import get_logger
from ..hparams import get_predict_args
from ..inference.planning import plan_features
from ..train.lock import output_dir_lock
from .common import load_model_and_rows

logger = get_logger(__name__)


def run_plan(args: Union[dict[str, Any], list[str], None] = None) -> str:
    """Writes `plans.jsonl` (one line per row: dataset, row, cost, the best cost after each iteration, the file) and
    `plans/<dataset>_row<i>.safetensors` with `actions` `[n, d_a]`, `states` `[horizon, d_s]` and, with
    `num_samples`, `state_samples` `[S, horizon, d_s]`. Each row's vectors are the history (its first
    `context_groups` groups when that key is given). Returns the path of plans.jsonl."""
    parsed = get_predict_args(args)
    with output_dir_lock(parsed.training.output_dir, command="plan run"):
        return _run_plan(parsed)


def _run_plan(parsed) -> str:
    inference = parsed.inference
    if not inference.goal:
        raise ConfigError("`goal` is required: an embedding file holding the goal state.")
    model, dataset, output_dir = load_model_and_rows(parsed)
    cfg = model.config
    predicted = [name for name in cfg.stream_dims if not cfg.is_condition(name)]
    stream = inference.goal_stream or (predicted[0] if len(predicted) == 1 else None)
    if stream not in predicted:
        raise ConfigError(f"`goal_stream` must name one of the predicted streams {predicted}, got {stream!r}.")
    goal_path = os.path.abspath(inference.goal)
    try:
        goal = load_embedding(os.path.basename(goal_path), os.path.dirname(goal_path))
    except DataError as err:
        raise DataError(f"`goal` {inference.goal}: {err}") from None
    if goal.shape[0] != 1:
        raise DataError(f"`goal` {inference.goal}: holds {goal.shape[0]} vectors; the goal is one state.")
    options = dict(
        goal={stream: goal[0]}, weights={stream: _numbers(inference.goal_weights, "goal_weights")},
        action_stream=inference.action_stream, low=_numbers(inference.action_low, "action_low"),
        high=_numbers(inference.action_high, "action_high"), candidates=inference.candidates,
        iterations=inference.iterations, elites=inference.elites, method=inference.plan_method,
        seed=parsed.training.seed, num_samples=inference.num_samples or None, risk=inference.risk,
        alpha=inference.cvar_alpha, temperature=inference.temperature,
    )
    context = inference.context_groups if "context_groups" in parsed.given else None
    folder = os.path.join(output_dir, "plans")
    path = os.path.join(output_dir, "plans.jsonl")
    # written into a hidden staging folder, then moved into place with plans.jsonl last: old plans or new, never a mix
    with staged_outputs(output_dir, ["plans", "plans.jsonl"], "plans.jsonl") as staging, \
            open(os.path.join(staging, "plans.jsonl"), "w", encoding="utf-8") as f:
        os.makedirs(os.path.join(staging, "plans"))
        for features in tqdm(dataset, desc="plan", unit="row"):
            if context is not None:
                from ..inference import context_features

                features = context_features(features, context)
            try:
                result = plan_features(model, features, inference.horizon, **options)
            except DataError as err:
                raise DataError(f"dataset {features['dataset_name']}, row {features['row_index']}: {err}") from None
            name = f"{features['dataset_name']}_row{features['row_index']}"
            record = {"dataset": features["dataset_name"], "row": features["row_index"], "cost": result.cost,
                      "costs": [float(c) for c in result.costs], "horizon": inference.horizon,
                      "action_stream": options["action_stream"] or _only_condition(cfg), "state_stream": stream,
                      "file": f"plans/{name}.safetensors"}
            _write_plan(os.path.join(staging, record["file"]), result, stream)
            f.write(json.dumps(record) + "\n")
    logger.info(f"Wrote the plans of {len(dataset)} rows to {path} and {folder}/")
    return path


def _numbers(text, key: str):
    if text is None:
        return None
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"`{key}` must be a number or comma-separated numbers, got '{text}'.") from None
    return values[0] if len(values) == 1 else values


def _only_condition(cfg) -> str:
    return next(iter(cfg.given_streams))


def _write_plan(path: str, result, stream: str) -> None:
    from safetensors.numpy import save_file

    states = result.states if isinstance(result.states, np.ndarray) else result.states[stream]
    tensors = {"actions": result.actions, "states": states}
    if result.state_samples is not None:
        samples = result.state_samples
        tensors["state_samples"] = samples if isinstance(samples, np.ndarray) else samples[stream]
    save_file({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in tensors.items()}, path,
              metadata={"description": "plan", "modality": "plan"})
