"""`wmfactory predict`: write `predictions.jsonl` and `predicted_embeddings/` for the rows of a dataset."""

import json
import os
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from ..extras.logging import get_logger
from ..hparams import get_predict_args
from ..model.generation import generate_groups, teacher_forced
from .common import load_model_and_rows, sampling_of

logger = get_logger(__name__)


def run_predict(args: Union[dict[str, Any], list[str], None] = None) -> str:
    """Writes `predictions.jsonl` (one line per predicted group occurrence; with `num_samples`, its `samples`
    `[S][n][d]` beside `predicted`, their mean in rollouts and the head's mean when teacher-forced) and
    `predicted_embeddings/` (one file per group, in the seed's JSON format). Returns the path of
    predictions.jsonl."""
    parsed = get_predict_args(args)
    model, dataset, output_dir = load_model_and_rows(parsed)
    mode, context_groups = parsed.inference.predict_mode, parsed.inference.context_groups
    sampling = sampling_of(parsed)
    embeddings_dir = os.path.join(output_dir, "predicted_embeddings")
    os.makedirs(embeddings_dir, exist_ok=True)
    path = os.path.join(output_dir, "predictions.jsonl")
    lines = 0
    with open(path, "w", encoding="utf-8") as f:
        for features in tqdm(dataset, desc=f"predict ({mode})", unit="row"):
            if mode == "rollout":
                groups = generate_groups(model, features, context_groups, sampling)
            else:
                groups = teacher_forced(model, features, sampling)
            for group in groups:
                record = {"dataset": features["dataset_name"], "row": features["row_index"], "key": group.key,
                          "occurrence": group.occurrence, "mode": mode, "horizon": group.horizon,
                          "predicted": group.predicted.tolist(), "target": group.target.tolist()}
                if group.samples is not None:
                    record["samples"] = group.samples.tolist()
                f.write(json.dumps(record) + "\n")
                name = f"{features['dataset_name']}_row{features['row_index']}_{group.key}_{group.occurrence}.json"
                _write_embedding(os.path.join(embeddings_dir, name), group.predicted,
                                 f"{mode} prediction of <{group.key}> #{group.occurrence}, row "
                                 f"{features['row_index']} of {features['dataset_name']}")
                lines += 1
    logger.info(f"Wrote {lines} predicted groups to {path} and {embeddings_dir}/")
    return path


def _write_embedding(path: str, vectors: np.ndarray, description: str) -> None:
    content = {"embedding": vectors.tolist(), "shape": list(vectors.shape), "description": description,
               "modality": "predicted"}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)
