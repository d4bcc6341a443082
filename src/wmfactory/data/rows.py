"""One row given from Python -> the same features that training sees. A row is a dict in the dataset format (its
messages in `messages` or `conversations`, with role/content or ShareGPT's from/value tags), or a registered
dataset's name and a row index, read with that dataset's own columns and tags."""

from typing import Any, Optional, Union

from ..extras.errors import DataError
from .encoder import NO_CUTOFF, TargetRule
from .loader import load_raw
from .processor import RowProcessor
from .registry import OPENAI_TAGS, DatasetAttr, get_dataset_attrs, resolve_columns
from .streams import DimSpec
from .template import get_template

Row = Union[dict[str, Any], tuple[str, int]]


def row_attr(row: dict[str, Any], name: str = "row") -> DatasetAttr:
    """The columns and tags of a row given from Python, read off the row itself."""
    attr = resolve_columns(DatasetAttr(name=name, load_from="python", path="", allow_outside_media_dir=True), list(row))
    messages = row.get(attr.messages)
    first = next((m for m in messages if isinstance(m, dict)), {}) if isinstance(messages, list) else {}
    if attr.role_tag in first or attr.content_tag in first:  # ShareGPT's from/value
        return attr
    return DatasetAttr(name=name, load_from="python", path="", messages=attr.messages, allow_outside_media_dir=True,
                       **OPENAI_TAGS)


def dataset_row(name: str, index: int, dataset_dir: str) -> tuple[dict[str, Any], DatasetAttr]:
    """Row `index` of the dataset registered as `name` in `<dataset_dir>/dataset_info.json`, and its attributes."""
    attr = get_dataset_attrs([name], dataset_dir)[0]
    raw = load_raw(attr)
    if not 0 <= index < len(raw):
        raise DataError(f"dataset '{name}' has {len(raw)} rows: there is no row {index}.")
    return raw[index], resolve_columns(attr, raw.column_names)


def encode_row(row: Row, tokenizer, template: Optional[str], target_rule: TargetRule,
               embedding_dim: DimSpec, dataset_dir: Optional[str] = None,
               condition_patterns: tuple[str, ...] = (), missing_values: str = "refuse") -> dict[str, Any]:
    """`row`: a dict (entries of `embeddings` are paths, relative to `dataset_dir`, default the current folder, or
    array-likes), or `(dataset_name, row_index)` of a dataset registered in `dataset_dir` (default `data`).
    `embedding_dim`: one dimension for every stream or one per stream."""
    if isinstance(row, dict):
        index, attr = 0, row_attr(row)
    else:
        name, index = row
        row, attr = dataset_row(name, index, dataset_dir or "data")
    processor = RowProcessor(
        attr=attr,
        template=get_template(template, tokenizer),
        tokenizer=tokenizer,
        media_dir=dataset_dir or ".",
        cutoff_len=NO_CUTOFF,
        target_rule=target_rule,
        embedding_dim=embedding_dim,
        condition_patterns=condition_patterns,
        missing_values=missing_values,
    )
    features, reason = processor(row, index)
    if features is None:
        raise DataError(f"row {index} cannot be used: {reason}")
    return features
