"""`wmfactory predict`: write `predictions.jsonl` and `predicted_embeddings/` for the rows of a dataset."""

import json
import os
from typing import Any, Iterator, Union

import numpy as np
from tqdm.auto import tqdm

from ..extras.atomic import remove_partials, staged_outputs
from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..hparams import get_predict_args
from ..inference import generate_rows, row_batches, teacher_forced_rows
from ..train.lock import output_dir_lock
from .common import fit_rows, load_model_and_rows, long_rows_of, sampling_of

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
    with output_dir_lock(parsed.training.output_dir, command="predict run"):
        return _run_predict(parsed)


def _run_predict(parsed) -> str:
    bank = None
    if parsed.inference.bank:
        from ..encode.retrieval import load_bank

        bank = load_bank(parsed.inference.bank)
    model, dataset, output_dir = load_model_and_rows(parsed)
    predicted = {model.config.stream_dims[name] for name in model.config.predicted_streams}
    if bank is not None and bank.vectors.shape[1] not in predicted:
        raise DataError(f"`bank` '{parsed.inference.bank}' holds vectors of dimension {bank.vectors.shape[1]}, the "
                        f"model predicts dimension {', '.join(map(str, sorted(predicted)))}: encode the bank with the "
                        "encoder of the training data.")
    remove_partials(output_dir)
    if parsed.inference.output_format != "jsonl":
        return _predict_table(parsed, model, dataset, output_dir, sampling_of(parsed))
    # written into a hidden staging folder, then moved into place with predictions.jsonl last
    with staged_outputs(output_dir, ["predicted_embeddings", "predictions.jsonl"], "predictions.jsonl") as staging:
        os.makedirs(os.path.join(staging, "predicted_embeddings"))
        lines = _predict_into(staging, model, dataset, parsed, sampling_of(parsed), bank)
    path = os.path.join(output_dir, "predictions.jsonl")
    embeddings_dir = os.path.join(output_dir, "predicted_embeddings")
    logger.info(f"Wrote {lines} predicted groups to {path} and {embeddings_dir}/")
    return path


def _predict_into(folder: str, model, dataset, parsed, sampling, bank) -> int:
    """predictions.jsonl and predicted_embeddings/ of every row, written into `folder`; the number of lines."""
    mode = parsed.inference.predict_mode
    long_rows = long_rows_of(parsed, model, f"predict ({mode})")
    lines = 0
    bar = tqdm(total=len(dataset), desc=f"predict ({mode})", unit="row")
    with open(os.path.join(folder, "predictions.jsonl"), "w", encoding="utf-8") as f, bar:
        for batch in row_batches(dataset, parsed.training.per_device_eval_batch_size):
            batch, predictions = _predict_batch(model, batch, parsed.inference, sampling, long_rows)
            for features, groups in zip(batch, predictions):
                lines += _write_row(folder, f, features, groups, mode, bank, parsed.inference.top_k)
            bar.update(len(batch))
        f.flush()
        os.fsync(f.fileno())
    long_rows.warn()
    return lines


def _predict_batch(model, batch: list[dict], inference, sampling, long_rows) -> tuple[list[dict], list[list]]:
    """(the rows cut to fit the model's positions and `context_length`, their predictions)."""
    if inference.predict_mode == "rollout":
        batch, contexts = fit_rows(long_rows, batch, inference.context_groups)
        return batch, generate_rows(model, batch, contexts, sampling)
    batch, _ = fit_rows(long_rows, batch)
    return batch, teacher_forced_rows(model, batch, sampling)


def _predict_table(parsed, model, dataset, output_dir: str, sampling) -> str:
    """`output_format: csv|parquet`: one long table (`commands/prediction_table.py`) instead of the jsonl lines."""
    from .prediction_table import TableRows, table_lines, write_table

    inference = parsed.inference
    tables = TableRows(parsed.data.dataset_dir, parsed.data.dataset_names)
    long_rows = long_rows_of(parsed, model, f"predict ({inference.predict_mode})")
    lines = []
    with tqdm(total=len(dataset), desc=f"predict ({inference.predict_mode})", unit="row") as bar:
        for batch in row_batches(dataset, parsed.training.per_device_eval_batch_size):
            batch, predictions = _predict_batch(model, batch, inference, sampling, long_rows)
            for features, groups in zip(batch, predictions):
                lines.extend(table_lines(features, groups, inference.predict_mode, inference.levels, tables))
            bar.update(len(batch))
    long_rows.warn()
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
