from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError


@dataclass
class ModelArguments:
    """Which base model to load, and how."""

    _argument_group_name = "model: the base LLM"

    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Local folder or hub id of a causal LM (`--model_name` is accepted too).",
                  "aliases": ["--model_name"]},
    )
    adapter_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "A LoRA adapter folder written by an earlier run, to keep training it."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow the model's own Python code from the hub (only when asked)."}
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where hub downloads are kept."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision: branch, tag or commit."})
    hf_hub_token: Optional[str] = field(default=None, metadata={"help": "Token for private hub models."})
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="float32",
        metadata={"help": "Dtype the base weights are loaded in. Trainable weights stay float32 unless you choose "
                          "otherwise; use `bf16: true` for mixed precision."},
    )

    def __post_init__(self):
        if self.model_name_or_path is None:
            raise ConfigError("`model_name_or_path` is required (a local folder or a hub id of a causal LM).")
