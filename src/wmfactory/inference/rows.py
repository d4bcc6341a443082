"""One row in the dataset format, given from Python, -> the same features that training sees."""

from typing import Any, Optional

from ..data.encoder import NO_CUTOFF
from ..data.processor import RowProcessor
from ..data.registry import DatasetAttr
from ..data.template import get_template


def row_attr(name: str = "row") -> DatasetAttr:
    """Rows from Python use OpenAI-style messages: `{"role": ..., "content": ...}`."""
    return DatasetAttr(name=name, load_from="python", path="", role_tag="role", content_tag="content",
                       user_tag="user", assistant_tag="assistant")


def encode_row(model, row: dict[str, Any], dataset_dir: Optional[str] = None, index: int = 0) -> dict[str, Any]:
    """`row`: `{"messages": [...], "embeddings": {key: [path or array-like, ...]}}`; relative paths resolve against
    `dataset_dir` (default: the current folder). Uses the model's tokenizer, template and target rule."""
    config = model.wm_config
    processor = RowProcessor(
        attr=row_attr(),
        template=get_template(config.template, model.tokenizer),
        tokenizer=model.tokenizer,
        media_dir=dataset_dir or ".",
        cutoff_len=NO_CUTOFF,
        target_rule=config.embedding_targets,
        embedding_dim=config.embedding_dim,
    )
    features, reason = processor(row, index)
    if features is None:
        raise ValueError(f"row {index} cannot be used: {reason}")
    return features
