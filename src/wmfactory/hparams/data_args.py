from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError


@dataclass
class DataArguments:
    """Which datasets to read, how to render and cut them."""

    _argument_group_name = "dataset"

    dataset: Optional[str] = field(
        default=None, metadata={"help": "Dataset name(s) from dataset_info.json, comma-separated to mix them."}
    )
    eval_dataset: Optional[str] = field(
        default=None, metadata={"help": "Dataset name(s) for evaluation, comma-separated."}
    )
    dataset_dir: str = field(default="data", metadata={"help": "Folder holding dataset_info.json and the data."})
    media_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Folder that relative embedding paths resolve against (default: dataset_dir)."},
    )
    template: Optional[str] = field(
        default=None,
        metadata={"help": "Chat template: the tokenizer's own when unset, else one of default, empty, chatml, "
                          "llama3, qwen."},
    )
    cutoff_len: int = field(default=2048, metadata={"help": "Maximum length of a rendered row, in positions."})
    packing: bool = field(
        default=False,
        metadata={"help": "Pack the rows of each batch into as few sequences of `cutoff_len` positions as first fit "
                          "allows; each row keeps its own positions and attends only to itself (LLaMA-Factory's "
                          "`neat_packing`), so the losses are those of the unpacked rows."},
    )
    train_on_prompt: bool = field(default=False, metadata={"help": "Put LM labels on prompt tokens too."})
    max_samples: Optional[int] = field(
        default=None, metadata={"help": "Keep at most this many rows of each dataset (for quick runs)."}
    )
    val_size: float = field(
        default=0.0,
        metadata={"help": "Rows held out for evaluation: a fraction in [0, 1) or an integer count."},
    )
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = field(
        default="concat", metadata={"help": "How several datasets are mixed."}
    )
    interleave_probs: Optional[str] = field(
        default=None, metadata={"help": "Sampling probabilities for interleaving, comma-separated."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignore the cached preprocessed datasets."})
    preprocessing_num_workers: Optional[int] = field(
        default=None, metadata={"help": "Processes used for preprocessing."}
    )
    preprocessing_batch_size: int = field(default=1000, metadata={"help": "Rows per preprocessing batch."})
    tokenized_path: Optional[str] = field(
        default=None,
        metadata={"help": "Save the preprocessed dataset here, or load it from here when it exists (then the other "
                          "data keys are ignored)."},
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={"help": "Train on the valid rows and report how many invalid ones were skipped, per reason "
                          "(default: the first invalid row stops the run)."},
    )

    def __post_init__(self):
        if self.val_size < 0:
            raise ConfigError("`val_size` must be >= 0.")
        if self.cutoff_len < 2:
            raise ConfigError("`cutoff_len` must be at least 2.")
        if self.media_dir is None:
            self.media_dir = self.dataset_dir

    @property
    def dataset_names(self) -> list[str]:
        return _split(self.dataset)

    @property
    def eval_dataset_names(self) -> list[str]:
        return _split(self.eval_dataset)


def _split(value: Optional[str]) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()] if value else []
