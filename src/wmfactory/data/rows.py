"""One row in the dataset format, given from Python, -> the same features that training sees."""

from typing import Any, Optional

from ..extras.errors import DataError
from .encoder import NO_CUTOFF, TargetRule
from .processor import RowProcessor
from .registry import DatasetAttr
from .template import get_template


def row_attr(name: str = "row") -> DatasetAttr:
    """Rows from Python use OpenAI-style messages: `{"role": ..., "content": ...}`."""
    return DatasetAttr(name=name, load_from="python", path="", role_tag="role", content_tag="content",
                       user_tag="user", assistant_tag="assistant")


def encode_row(row: dict[str, Any], tokenizer, template: Optional[str], target_rule: TargetRule,
               embedding_dim: Optional[int], dataset_dir: Optional[str] = None, index: int = 0) -> dict[str, Any]:
    """`row`: `{"messages": [...], "embeddings": {key: [path or array-like, ...]}}`; relative paths resolve against
    `dataset_dir` (default: the current folder)."""
    processor = RowProcessor(
        attr=row_attr(),
        template=get_template(template, tokenizer),
        tokenizer=tokenizer,
        media_dir=dataset_dir or ".",
        cutoff_len=NO_CUTOFF,
        target_rule=target_rule,
        embedding_dim=embedding_dim,
    )
    features, reason = processor(row, index)
    if features is None:
        raise DataError(f"row {index} cannot be used: {reason}")
    return features
