"""What `predict` and `eval` share: the trained world model, and the rows of `dataset` read as that model reads."""

import dataclasses
import os
from typing import Optional

from ..data import get_dataset, get_template
from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..hparams import ModelArguments, PredictArgs
from ..model import WorldModel
from ..data.encoder import NO_CUTOFF
from ..inference import Sampling
from ..inference.history import LongRows

logger = get_logger(__name__)


def load_trained_world_model(model_args: ModelArguments, device) -> WorldModel:
    """`adapter_name_or_path` (a training output folder, on the base `model_name_or_path`), or
    `model_name_or_path` itself when it is a training output folder."""
    folder = model_args.adapter_name_or_path or model_args.model_name_or_path
    base = model_args.model_name_or_path if model_args.adapter_name_or_path else None
    return WorldModel.from_pretrained(folder, base_model_name_or_path=base, device=device,
                                      trust_remote_code=model_args.trust_remote_code)


def load_model_and_rows(args: PredictArgs):
    """(model, preprocessed rows of `dataset`, output_dir). Keys the user did not give (`template`,
    `embedding_targets`) come from the model's configuration, and so do its streams and condition streams."""
    model = load_trained_world_model(args.model, args.training.device)
    config = model.config
    # the rows of `dataset` themselves: no validation split, not a training run's saved `tokenized_path`, and whole
    # (unless `cutoff_len` is given): a row longer than the model's positions is cut at its start (`fit_rows`)
    data_args = dataclasses.replace(args.data, val_size=0.0, eval_dataset=None, tokenized_path=None,
                                    template=args.data.template if "template" in args.given else config.template,
                                    cutoff_len=args.data.cutoff_len if "cutoff_len" in args.given else NO_CUTOFF)
    world_model_args = dataclasses.replace(
        args.world_model, embedding_dim=config.row_dims,
        condition_streams=config.condition_streams, past_streams=config.past_streams,
        missing_values=config.missing_values,
        embedding_targets=args.world_model.embedding_targets if "embedding_targets" in args.given
        else config.embedding_targets,
    )
    template = get_template(data_args.template, model.tokenizer)
    rows = get_dataset(template, model.tokenizer, args.model, data_args, args.training, world_model_args).train_dataset
    # the rows with vectors, by index (one column read, no hashed filter function); all of them: the rows themselves
    keep = [i for i, groups in enumerate(rows["embedding_groups"]) if len(groups) > 0]
    with_vectors = rows if len(keep) == len(rows) else rows.select(keep)
    if len(with_vectors) == 0:
        raise DataError(f"`dataset` {args.data.dataset}: no row holds an embedding vector, so there is nothing to "
                        "predict.")
    if len(with_vectors) < len(rows):
        logger.warning(f"Skipping {len(rows) - len(with_vectors)} of {len(rows)} rows without embedding vectors "
                       "(text only): there is nothing to predict in them.")
    os.makedirs(args.training.output_dir, exist_ok=True)
    return model, with_vectors, args.training.output_dir


def sampling_of(args: PredictArgs) -> Optional[Sampling]:
    """`num_samples` draws at `temperature`, seeded by `seed`; None for the mean only."""
    inference = args.inference
    if inference.num_samples == 0:
        return None
    return Sampling(inference.num_samples, inference.temperature, args.training.seed)


def long_rows_of(args: PredictArgs, model, what: str) -> LongRows:
    """What fits the rows of a predict or eval run into the model's positions (and `context_length`)."""
    targets = args.world_model.embedding_targets if "embedding_targets" in args.given else None
    hint = (" Give more `context_groups` (fewer groups to generate), or cut the rows at their end with `cutoff_len`."
            if args.inference.predict_mode == "rollout" or what == "eval" else "")
    return LongRows(model, args.inference.context_length, targets, what, hint)


def fit_rows(long_rows: LongRows, batch: list[dict], context_groups: Optional[int] = None) -> tuple[list, list[int]]:
    """The rows of `batch` cut to fit (their history: the first `context_groups` groups, before a rollout; None:
    the whole row), and each row's `context_groups` after its cut."""
    rows, contexts = [], []
    for features in batch:
        cut, dropped = long_rows.fit(features, history=context_groups)
        rows.append(cut)
        contexts.append(max((context_groups or 0) - dropped, 0))
    return rows, contexts
