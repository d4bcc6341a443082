"""`wmfactory predict`: write `predictions.jsonl` and `predicted_embeddings/` for the rows of a dataset."""

import json
import os
from typing import Any, Iterator, Union

import numpy as np
from tqdm.auto import tqdm

from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..hparams import get_predict_args
from ..inference import generate_rows, row_batches, teacher_forced_rows
from .common import load_model_and_rows, sampling_of

logger = get_logger(__name__)


def run_predict(args: Union[dict[str, Any], list[str], None] = None) -> str:
    """Writes `predictions.jsonl` (one small line per predicted group occurrence, naming its file) and
    `predicted_embeddings/`: one `.safetensors` per group, whose tensor `embedding` `[n, d]` is the prediction (so
    the file is an embedding file a dataset can list), beside `target` `[n, d]` and, with `num_samples`, `samples`
    `[S, n, d]` (in rollouts `embedding` is then their mean; teacher-forced, the head's mean). Returns the path of
    predictions.jsonl; `read_predictions` reads it back with the arrays. The rows run `per_device_eval_batch_size`
    at a time, as one batch (`wmfactory.inference`). With `bank` (an `encode` output folder), each line also holds
    `neighbours`: per predicted vector, its `top_k` nearest items `{"id", "score", "text" or "path"}`. With
    `output_format: csv|parquet`, one long table `predictions.csv|parquet` instead (`prediction_table.py`), whose
    path is returned."""
    parsed = get_predict_args(args)
    bank = None
    if parsed.inference.bank:
        from ..encode.retrieval import load_bank

        bank = load_bank(parsed.inference.bank)
    model, dataset, output_dir = load_model_and_rows(parsed)
    mode, context_groups = parsed.inference.predict_mode, parsed.inference.context_groups
    sampling = sampling_of(parsed)
    if parsed.inference.output_format != "jsonl":
        return _predict_table(parsed, model, dataset, output_dir, sampling)
    embeddings_dir = os.path.join(output_dir, "predicted_embeddings")
    os.makedirs(embeddings_dir, exist_ok=True)
    path = os.path.join(output_dir, "predictions.jsonl")
    lines = 0
    batch_size = parsed.training.per_device_eval_batch_size
    bar = tqdm(total=len(dataset), desc=f"predict ({mode})", unit="row")
    with open(path, "w", encoding="utf-8") as f, bar:
        for batch in row_batches(dataset, batch_size):
            if mode == "rollout":
                predictions = generate_rows(model, batch, context_groups, sampling)
            else:
                predictions = teacher_forced_rows(model, batch, sampling)
            for features, groups in zip(batch, predictions):
                lines += _write_row(output_dir, f, features, groups, mode, bank, parsed.inference.top_k)
            bar.update(len(batch))
    logger.info(f"Wrote {lines} predicted groups to {path} and {embeddings_dir}/")
    return path


def _predict_table(parsed, model, dataset, output_dir: str, sampling) -> str:
    """`output_format: csv|parquet`: one long table (`commands/prediction_table.py`) instead of the jsonl lines."""
    from .prediction_table import TableRows, table_lines, write_table

    inference = parsed.inference
    tables = TableRows(parsed.data.dataset_dir, parsed.data.dataset_names)
    lines = []
    with tqdm(total=len(dataset), desc=f"predict ({inference.predict_mode})", unit="row") as bar:
        for batch in row_batches(dataset, parsed.training.per_device_eval_batch_size):
            if inference.predict_mode == "rollout":
                predictions = generate_rows(model, batch, inference.context_groups, sampling)
            else:
                predictions = teacher_forced_rows(model, batch, sampling)
            for features, groups in zip(batch, predictions):
                lines.extend(table_lines(features, groups, inference.predict_mode, inference.levels, tables))
            bar.update(len(batch))
    path = write_table(lines, os.path.join(output_dir, f"predictions.{inference.output_format}"),
                       inference.output_format)
    logger.info(f"Wrote {len(lines)} predicted numbers to {path}")
    return path


def _write_row(output_dir: str, f, features: dict[str, Any], groups: list, mode: str, bank=None,
               top_k: int = 5) -> int:
    """One line in predictions.jsonl and one file per predicted group of a row; returns the number of groups."""
    for group in groups:
        name = f"{features['dataset_name']}_row{features['row_index']}_{group.key}_{group.occurrence}"
        record = {"dataset": features["dataset_name"], "row": features["row_index"], "key": group.key,
                  "occurrence": group.occurrence, "mode": mode, "horizon": group.horizon,
                  "file": f"predicted_embeddings/{name}.safetensors", "shape": list(group.predicted.shape)}
        if group.samples is not None:
            record["num_samples"] = len(group.samples)
        if bank is not None:
            record["neighbours"] = bank.neighbours(group.predicted, top_k)
        f.write(json.dumps(record) + "\n")
        _write_prediction(os.path.join(output_dir, record["file"]), group,
                          f"{mode} prediction of <{group.key}> #{group.occurrence}, row "
                          f"{features['row_index']} of {features['dataset_name']}")
    return len(groups)


def _write_prediction(path: str, group, description: str) -> None:
    from safetensors.numpy import save_file

    tensors = {"embedding": group.predicted, "target": group.target}
    if group.samples is not None:
        tensors["samples"] = group.samples
    save_file({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in tensors.items()}, path,
              metadata={"description": description, "modality": "predicted"})


def read_predictions(path: str) -> Iterator[dict[str, Any]]:
    """The records of a `predictions.jsonl`, each with its arrays read from its file: `predicted` `[n, d]`,
    `target` `[n, d]` and, when sampled, `samples` `[S, n, d]` (float32)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            try:
                record = json.loads(line)
                file = os.path.join(folder, record["file"])
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}, line {number + 1}: not a prediction record (JSON with `file`)") from None
            try:
                tensors = load_file(file)
            except (OSError, SafetensorError) as err:
                raise DataError(f"{path}, line {number + 1}: cannot read {file} ({err})") from None
            if not {"embedding", "target"} <= set(tensors):
                raise DataError(f"{path}, line {number + 1}: {file} lacks the tensor `embedding` or `target`")
            record["predicted"], record["target"] = tensors["embedding"], tensors["target"]
            if "samples" in tensors:
                record["samples"] = tensors["samples"]
            yield record
