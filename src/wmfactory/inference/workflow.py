"""`wmfactory predict`, `eval` and `export`: load a trained world model, run it on a dataset, write the results."""

import dataclasses
import json
import os
from typing import Any, Optional, Union

import numpy as np

from ..data import get_dataset, get_template
from ..eval.plots import plot_horizon, plot_trajectories
from ..eval.report import evaluate_rows, format_report, save_report
from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..hparams import get_infer_args
from ..model.world_model import WORLD_MODEL_CONFIG, WorldModel
from .engine import generate_groups, teacher_forced, vector_stream

logger = get_logger(__name__)
Args = Union[dict[str, Any], list[str], None]


def load_trained_world_model(model_args, device) -> WorldModel:
    """`adapter_name_or_path` (a training output folder, on the base `model_name_or_path`), or
    `model_name_or_path` itself when it is a training output folder."""
    folder = model_args.adapter_name_or_path or model_args.model_name_or_path
    if not os.path.isfile(os.path.join(folder, WORLD_MODEL_CONFIG)):
        raise DataError(
            f"'{folder}' holds no {WORLD_MODEL_CONFIG}: point `model_name_or_path` (or `adapter_name_or_path`) at "
            "the output_dir of a wmfactory training run."
        )
    base = model_args.model_name_or_path if model_args.adapter_name_or_path else None
    return WorldModel.from_pretrained(folder, base_model_name_or_path=base, device=device,
                                      trust_remote_code=model_args.trust_remote_code)


def _prepare(args: Args):
    model_args, data_args, training_args, finetuning_args, infer_args, given = get_infer_args(args)
    if not data_args.dataset_names:
        raise DataError("`dataset` is required: the rows to predict (a name registered in dataset_info.json).")
    if "output_dir" not in given:
        raise DataError("`output_dir` is required: where the results are written.")
    model = load_trained_world_model(model_args, training_args.device)
    config = model.wm_config
    # the rows of `dataset` themselves: no validation split, and not a training run's saved `tokenized_path`
    data_args = dataclasses.replace(data_args, val_size=0.0, eval_dataset=None, tokenized_path=None,
                                    template=data_args.template if "template" in given else config.template)
    finetuning_args = dataclasses.replace(
        finetuning_args, stage="wm", embedding_dim=config.embedding_dim,
        embedding_targets=finetuning_args.embedding_targets if "embedding_targets" in given
        else config.embedding_targets,
    )
    template = get_template(data_args.template, model.tokenizer)
    dataset = get_dataset(template, model.tokenizer, model_args, data_args, training_args, finetuning_args)
    os.makedirs(training_args.output_dir, exist_ok=True)
    return model, dataset.train_dataset, training_args.output_dir, infer_args


def run_predict(args: Args = None) -> str:
    """Writes `predictions.jsonl` (one line per predicted group occurrence) and `predicted_embeddings/` (one file
    per group, in the seed's JSON format). Returns the path of predictions.jsonl."""
    model, dataset, output_dir, infer_args = _prepare(args)
    mode = infer_args.predict_mode
    embeddings_dir = os.path.join(output_dir, "predicted_embeddings")
    os.makedirs(embeddings_dir, exist_ok=True)
    path = os.path.join(output_dir, "predictions.jsonl")
    lines = 0
    with open(path, "w", encoding="utf-8") as f:
        for features in dataset:
            if mode == "rollout":
                groups = generate_groups(model, features, infer_args.context_groups)
            else:
                groups = teacher_forced(model, features)
            for group in groups:
                record = {"dataset": features["dataset_name"], "row": features["row_index"], "key": group.key,
                          "occurrence": group.occurrence, "mode": mode, "horizon": group.horizon,
                          "predicted": group.predicted.tolist(), "target": group.target.tolist()}
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


def run_eval(args: Args = None) -> dict[str, Any]:
    """Writes `eval_results.json`, `eval_horizon.png` and `eval_trajectories.png`; prints the table."""
    model, dataset, output_dir, infer_args = _prepare(args)
    report = evaluate_rows(model, dataset, infer_args.context_groups)
    save_report(report, os.path.join(output_dir, "eval_results.json"))
    print(format_report(report))
    plot_horizon(report, output_dir)
    plot_trajectories(_trajectories(model, dataset, infer_args), output_dir)
    return report


def _trajectories(model, dataset, infer_args) -> list[dict[str, Any]]:
    trajectories = []
    for features in dataset:
        if len(trajectories) >= infer_args.plot_rows or infer_args.context_groups == 0:
            break
        generated = generate_groups(model, features, infer_args.context_groups)
        if not generated or generated[0].vector_indices[0] == 0:
            continue
        trajectories.append({"row": features["row_index"], "true": vector_stream(features),
                             "predicted": np.concatenate([g.predicted for g in generated]),
                             "origin": generated[0].vector_indices[0] - 1})
    return trajectories


def run_export(args: Args = None) -> str:
    """Merges a LoRA adapter into the base weights and writes a folder that loads with no adapter."""
    model_args, _, _, _, infer_args, _ = get_infer_args(args)
    if not infer_args.export_dir:
        raise DataError("`export_dir` is required: where the merged world model is written.")
    model = load_trained_world_model(model_args, "cpu")
    language_model = model.language_model.merge_and_unload() if model.is_peft else model.language_model
    config = dataclasses.replace(model.wm_config, finetuning_type="full", base_model_name_or_path=None)
    merged = WorldModel(language_model, config)
    merged.load_state_dict(model.world_model_state_dict(), strict=False)
    merged.save_pretrained(infer_args.export_dir)
    model.tokenizer.save_pretrained(infer_args.export_dir)
    logger.info(f"Exported the world model to {infer_args.export_dir}")
    return infer_args.export_dir


def run_command(name: str, args: Optional[list[str]]) -> Any:
    return {"predict": run_predict, "eval": run_eval, "export": run_export}[name](args)
