"""Datasets in, tokenised world-model features out. Preprocessing runs through `datasets.map`, so its result is
cached in Arrow files next to the raw data cache and reused by later runs (`overwrite_cache` ignores it)."""

import dataclasses
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    List,
    Value,
    concatenate_datasets,
    interleave_datasets,
    load_dataset,
    load_from_disk,
)
from datasets.exceptions import DatasetGenerationError

from ..extras.errors import ConfigError, DataError
from ..extras.logging import get_logger
from ..hparams import DataArguments, ModelArguments, TrainingArguments, WorldModelArguments
from .converter import embedding_files
from .processor import RowProcessor
from .provenance import warn_if_encoders_differ
from .registry import DATA_FILE_SUFFIXES, DatasetAttr, get_dataset_attrs, resolve_columns
from .splits import SERIES, TIMESTAMPS, mask_seen_steps, time_split
from .streams import input_patterns, stream_of

logger = get_logger(__name__)
DEBUG_ROWS = 2  # rows traced with TRANSFORMERS_VERBOSITY=debug, even when the preprocessed data comes from cache

FEATURES = Features(
    {
        "input_ids": List(Value("int32")),
        "labels": List(Value("int32")),
        "embedding_positions": List(Value("int32")),
        "embedding_vectors": List(List(Value("float32"))),
        "embedding_is_target": List(Value("bool")),
        "embedding_groups": List(Value("int32")),  # [v] placeholder occurrence (group) of each vector
        "embedding_streams": List(Value("string")),  # [v] stream of each vector (its key without trailing digits)
        "group_keys": List(Value("string")),  # per group: its key, e.g. m2
        "group_occurrences": List(Value("int32")),  # per group: which occurrence of that key
        "group_in_assistant": List(Value("bool")),  # per group: inside an assistant turn
        "group_dims": List(Value("int32")),  # per group: the dimension of its vectors
        "row_index": Value("int64"),
        "dataset_name": Value("string"),
        "series": Value("string"),  # the row's series and steps, where it is a window of a table (data/splits.py)
        "timestamps": List(Value("string")),
        "drop_reason": Value("string"),  # why the row is dropped ("" when kept); removed after preprocessing
        "problem": Value("string"),  # the full message of an invalid row, with its location
    }
)


@dataclass
class DatasetModule:
    train_dataset: Optional[Dataset]
    eval_dataset: Optional[Dataset]
    stream_dims: dict[str, int]  # the dimension of each stream found in the data (empty when it holds no vectors)


def get_dataset(
    template,
    tokenizer,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    world_model_args: WorldModelArguments,
) -> DatasetModule:
    if data_args.tokenized_path and os.path.isfile(os.path.join(data_args.tokenized_path, "dataset_dict.json")):
        logger.warning(f"Loading the preprocessed dataset from {data_args.tokenized_path}; other data keys are "
                       "ignored.")
        saved = load_from_disk(data_args.tokenized_path)
        train, evaluation = saved.get("train"), saved.get("validation")
        if "group_dims" not in (train if train is not None else evaluation).column_names:
            raise DataError(f"'{data_args.tokenized_path}' was preprocessed by an earlier wmfactory version (it has no "
                            "streams): delete it, or point `tokenized_path` elsewhere, to preprocess again.")
        return DatasetModule(train, evaluation, stream_dims(train, evaluation))
    warn_if_encoders_differ(data_args.dataset_names + data_args.eval_dataset_names, data_args.dataset_dir)
    with training_args.main_process_first(desc="preprocessing", local=True):
        train = _load_mixture(data_args.dataset_names, template, tokenizer, model_args, data_args, world_model_args)
        evaluation = _load_mixture(
            data_args.eval_dataset_names, template, tokenizer, model_args, data_args, world_model_args
        )
    dims = stream_dims(train, evaluation)
    if train is not None and data_args.val_size > 0:
        if evaluation is not None:
            raise DataError("Set either `val_size` or `eval_dataset`, not both.")
        train, evaluation = split_validation(train, data_args.val_size, training_args.seed)
    if data_args.tokenized_path and training_args.should_save:
        splits = {name: data for name, data in (("train", train), ("validation", evaluation)) if data is not None}
        DatasetDict(splits).save_to_disk(data_args.tokenized_path)
        logger.info(f"Preprocessed dataset saved at {data_args.tokenized_path}; later runs with "
                    f"`tokenized_path: {data_args.tokenized_path}` load it without reading the raw data.")
    return DatasetModule(train, evaluation, dims)


def split_validation(train: Dataset, val_size: float, seed: int) -> tuple[Dataset, Dataset]:
    """`val_size`: (training rows, evaluation rows). A share below 1, or a number of rows; the latest windows of each
    series where every row names its series and time stamps (`splits.time_split`), else rows drawn at random."""
    test_size = int(val_size) if val_size >= 1 else val_size
    held_out = test_size if isinstance(test_size, int) else int(np.ceil(test_size * len(train)))
    if held_out >= len(train) or held_out < 1:
        raise ConfigError(f"`val_size` {val_size} holds out {held_out} of the {len(train)} training rows: "
                          "at least one row must remain on each side.")
    by_time = time_split(train, held_out)
    if by_time is not None:
        logger.info(f"`val_size`: {by_time.describe(len(train))}.")
        return train.select(by_time.train), mask_seen_steps(train, by_time)
    split = train.train_test_split(test_size=test_size, seed=seed)
    return split["train"], split["test"]


def rows_with_targets(dataset: Dataset) -> int:
    """How many rows of a preprocessed dataset hold at least one target vector."""
    count = 0
    for batch in dataset.select_columns(["embedding_is_target"]).iter(batch_size=10000):
        count += sum(any(targets) for targets in batch["embedding_is_target"])
    return count


def _stream_dims_with_places(dataset: Optional[Dataset], part: str) -> dict[tuple[str, int], str]:
    """Each (stream, dimension) found in `dataset`, with where it first occurs: `dataset 'a', row 3` (of `part`)."""
    if dataset is None:
        return {}
    found: dict[tuple[str, int], str] = {}
    columns = dataset.select_columns(["group_keys", "group_dims", "dataset_name", "row_index"])
    for batch in columns.iter(batch_size=10000):
        for keys, dims, name, row in zip(batch["group_keys"], batch["group_dims"], batch["dataset_name"],
                                         batch["row_index"]):
            for key, dim in zip(keys, dims):
                found.setdefault((stream_of(key), dim), f"{part} dataset '{name}', row {row}")
    return found


def stream_dims(train: Optional[Dataset], evaluation: Optional[Dataset]) -> dict[str, int]:
    """The dimension of every stream of the run; a stream found with different dimensions names where each is."""
    found = _stream_dims_with_places(evaluation, "evaluation")
    found.update(_stream_dims_with_places(train, "training"))
    dims: dict[str, int] = {}
    for (stream, dim) in sorted(found):
        if stream in dims:
            detail = "; ".join(f"dimension {d} first at {place}" for (s, d), place in sorted(found.items())
                               if s == stream)
            raise DataError(f"embedding vectors of stream '{stream}' have different dimensions in one run: "
                            f"{detail}. (A stream is a placeholder key without its trailing digits; give streams of "
                            "different dimensions different key names.)")
        dims[stream] = dim
    return dims


def _load_mixture(names, template, tokenizer, model_args, data_args, world_model_args) -> Optional[Dataset]:
    if not names:
        return None
    datasets = []
    for attr in get_dataset_attrs(names, data_args.dataset_dir):
        raw = load_raw(attr, model_args.cache_dir, model_args.hf_hub_token, data_args.max_samples)
        mode = "skip" if data_args.skip_invalid_rows else "raise"
        datasets.append(preprocess(raw, attr, template, tokenizer, data_args, world_model_args, mode))
    if len(datasets) == 1:
        return datasets[0]
    if data_args.mix_strategy == "concat":
        return concatenate_datasets(datasets)
    probs = [float(p) for p in data_args.interleave_probs.split(",")] if data_args.interleave_probs else None
    stopping = "first_exhausted" if data_args.mix_strategy == "interleave_under" else "all_exhausted"
    return interleave_datasets(datasets, probabilities=probs, seed=0, stopping_strategy=stopping)


def load_raw(attr: DatasetAttr, cache_dir: Optional[str] = None, token: Optional[str] = None,
             max_samples: Optional[int] = None) -> Dataset:
    """The rows of one registered dataset as `datasets` reads them (at most `max_samples`). A file it cannot read
    is one DataError (datasets' own error log of it is held back: the error says the same)."""
    quiet = logging.getLogger("datasets")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        if attr.load_from == "hf_hub":
            raw = load_dataset(attr.path, name=attr.subset, split=attr.split, cache_dir=cache_dir, token=token)
        else:
            files = _data_files(attr)
            builder = DATA_FILE_SUFFIXES[os.path.splitext(files[0])[1].lower()]
            raw = load_dataset(builder, data_files=files, split="train", cache_dir=cache_dir)
    except DatasetGenerationError as err:
        cause = err.__cause__ or err
        raise DataError(f"dataset '{attr.name}': cannot read '{attr.path}': {_one_line(cause)}") from None
    except ConnectionError as err:  # a hub dataset while offline, or the hub unreachable
        raise DataError(f"dataset '{attr.name}': {_one_line(err)} (`hf_hub_url` needs the network; unset "
                        "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE, or download it and use `file_name`).") from None
    except (pa.ArrowException, ValueError, StopIteration, UnicodeDecodeError) as err:  # a file `datasets` chokes on
        raise DataError(f"dataset '{attr.name}': cannot read '{attr.path}': "
                        f"{_one_line(err) or 'the file is empty or not valid'}") from None
    finally:
        quiet.setLevel(level)
    if len(raw) == 0:
        raise DataError(f"dataset '{attr.name}': '{attr.path}' holds no rows.")
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))
    return raw


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _data_files(attr: DatasetAttr) -> list[str]:
    if os.path.isdir(attr.path):
        files = sorted(os.path.join(attr.path, name) for name in os.listdir(attr.path))
    else:
        files = [attr.path]
    files = [f for f in files if os.path.splitext(f)[1].lower() in DATA_FILE_SUFFIXES]
    if not files:
        raise DataError(f"dataset '{attr.name}': no data file (.json, .jsonl, .csv, .parquet, .arrow) at '{attr.path}'.")
    if len({os.path.splitext(f)[1].lower().replace(".jsonl", ".json") for f in files}) > 1:
        raise DataError(f"dataset '{attr.name}': files of different types in '{attr.path}'.")
    return files


def _empty_features(index: int, dataset_name: str) -> dict:
    return {"input_ids": [], "labels": [], "embedding_positions": [], "embedding_is_target": [],
            "embedding_vectors": np.zeros((0, 1), dtype=np.float32), "embedding_groups": [], "embedding_streams": [],
            "group_keys": [], "group_occurrences": [], "group_in_assistant": [], "group_dims": [], "row_index": index,
            "dataset_name": dataset_name, "series": "", "timestamps": []}


def files_signature(raw: Dataset, attr: DatasetAttr, media_dir: str) -> str:
    """A hash of the path, size and modification time of every embedding file the rows name (a stat per file,
    no read): it goes into the preprocessing cache's fingerprint, so that edited files are read again."""
    digest = hashlib.sha256()
    if attr.embeddings not in raw.column_names:
        return ""
    for batch in raw.select_columns(attr.embeddings).iter(batch_size=10000):
        for entry in batch[attr.embeddings]:
            for name in embedding_files(entry):
                try:
                    stat = os.stat(os.path.join(media_dir, name))
                    digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                except (OSError, ValueError):  # missing, or a name no file can have (a NUL byte): reported per row
                    digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()


def window_of(row: dict) -> tuple[str, list[str]]:
    """(series id, its steps) of a row that is a window of a table (`series` and a list `timestamps`), else ("", [])."""
    series, stamps = row.get(SERIES), row.get(TIMESTAMPS)
    if series is None or not isinstance(stamps, (list, tuple)):
        return "", []
    return str(series), [str(stamp) for stamp in stamps]


def preprocess(raw: Dataset, attr: DatasetAttr, template, tokenizer, data_args, world_model_args,
                mode: str = "raise", cutoff_len: Optional[int] = None) -> Dataset:
    """`mode`: `raise` (the first invalid row stops everything), `skip` (invalid rows are dropped and counted by
    reason) or `collect` (as skip, and the dropped rows stay, with their `problem`, for `wmfactory check`)."""
    keep_going = mode != "raise"
    attr = resolve_columns(attr, raw.column_names)
    processor = RowProcessor(
        attr=attr,
        template=template,
        tokenizer=tokenizer,
        media_dir=data_args.media_dir,
        cutoff_len=cutoff_len or data_args.cutoff_len,
        target_rule=world_model_args.embedding_targets,
        train_on_prompt=data_args.train_on_prompt,
        embedding_dim=world_model_args.embedding_dim,
        condition_patterns=input_patterns(world_model_args),  # conditions and past-only streams: never targets
        missing_values=world_model_args.missing_values,
        files_signature=files_signature(raw, attr, data_args.media_dir),
    )

    if logger.isEnabledFor(logging.DEBUG):
        tracer = dataclasses.replace(processor, trace=True)
        for index in range(min(DEBUG_ROWS, len(raw))):
            tracer(raw[index], index)

    def process_batch(batch: dict, indices: list[int]) -> dict:
        out = {name: [] for name in FEATURES}
        columns = list(batch)
        for i, index in enumerate(indices):
            row = {column: batch[column][i] for column in columns}
            problem = ""
            try:
                features, reason = processor(row, index)
            except DataError as err:
                if not keep_going:
                    raise
                features, reason, problem = None, f"invalid row: {err.reason}", str(err)
            if features is None:
                features = _empty_features(index, attr.name)
            features["drop_reason"] = reason or ""
            features["problem"] = problem
            features["series"], features["timestamps"] = window_of(row)
            for name in FEATURES:
                out[name].append(features[name])
        vectors = out["embedding_vectors"]
        if any(isinstance(v, list) for v in vectors):  # rows of mixed widths beside rows of one: one layout for Arrow
            out["embedding_vectors"] = [list(v) if isinstance(v, np.ndarray) else v for v in vectors]
        return out

    dataset = raw.map(
        process_batch,
        batched=True,
        batch_size=data_args.preprocessing_batch_size,
        with_indices=True,
        remove_columns=raw.column_names,
        features=FEATURES,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
        desc=f"Preprocessing {attr.name}",
    )
    if mode == "collect":
        return dataset
    reasons = Counter(reason for reason in dataset["drop_reason"] if reason)
    if reasons:
        detail = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
        logger.warning(f"Dataset '{attr.name}': dropped {sum(reasons.values())} of {len(dataset)} rows: {detail}.")
        dataset = dataset.filter(lambda reason: not reason, input_columns="drop_reason", desc="Dropping rows")
    if len(dataset) == 0:
        raise DataError(f"dataset '{attr.name}': no usable rows.")
    return dataset.remove_columns(["drop_reason", "problem"])
