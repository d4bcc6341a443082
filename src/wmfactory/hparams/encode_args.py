from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError

# pooling per encoder type: the first is the default
POOLINGS = {"text": ("mean", "cls"), "image": ("cls", "mean", "patch", "pooler"), "audio": ("mean", "frame")}


@dataclass
class EncodeArguments:
    """Keys of `wmfactory encode`: raw text, images or audio in, one embedding file per item out."""

    _argument_group_name = "encode"

    encoder: Optional[str] = field(
        default=None,
        metadata={"help": "The encoder: a Hugging Face model id (e.g. sentence-transformers/all-MiniLM-L6-v2, "
                          "facebook/dinov2-small, facebook/wav2vec2-base) or a local model folder."},
    )
    encoder_type: Optional[Literal["text", "image", "audio"]] = field(
        default=None, metadata={"help": "What the encoder reads; by default the one modality all items share."}
    )
    encoder_library: Literal["transformers", "sentence_transformers"] = field(
        default="transformers",
        metadata={"help": "Text only: `transformers` (AutoModel and `pooling`) or `sentence_transformers` (the "
                          "model's own pooling; `pip install sentence-transformers`)."},
    )
    revision: Optional[str] = field(default=None, metadata={"help": "Hub revision of the encoder (recorded)."})
    pooling: Optional[str] = field(
        default=None,
        metadata={"help": "One vector per item: text mean (default) or cls; image cls (default), mean (over "
                          "patches) or pooler (the model's pooled output); audio mean (default). Several vectors "
                          "per item: image patch, audio frame."},
    )
    normalize: bool = field(default=False, metadata={"help": "Scale every vector to unit L2 norm."})
    manifest: Optional[str] = field(
        default=None,
        metadata={"help": "A JSONL file, one item per line: `id` and one of `text`, `image`, `audio`, `path`; "
                          "optional `sequence` (items of one sequence, in file order, become one row)."},
    )
    dataset: Optional[str] = field(
        default=None,
        metadata={"help": "Dataset name(s) from dataset_info.json in `dataset_dir`, comma-separated: rows whose "
                          "`embeddings` entries are raw files or {\"text\": ...}."},
    )
    dataset_dir: str = field(default="data", metadata={"help": "Folder holding the input dataset_info.json."})
    media_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Folder that relative raw paths resolve against (default: dataset_dir for datasets, "
                          "the manifest's folder for a manifest)."},
    )
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where the embedding files, encoder.json, items.jsonl, the rows and dataset_info.json "
                          "go: a `dataset_dir` that `wmfactory train` reads as it is."},
    )
    embedding_format: Literal["safetensors", "npy"] = field(
        default="safetensors", metadata={"help": "File type of the embedding files."}
    )
    batch_size: int = field(default=32, metadata={"help": "Items per forward pass of the encoder."})
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Text: tokens per item at most (default: the tokenizer's limit, at most 512); longer "
                          "texts are cut, and counted in a warning."},
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when available), cpu, cuda, cuda:1, mps."})
    dtype: Literal["float32", "float16", "bfloat16"] = field(
        default="float32", metadata={"help": "Compute dtype of the encoder (files are always float32)."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Encode every item again (default: items with a file are skipped)."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the encoder's own modelling code."})

    def __post_init__(self):
        if not self.encoder:
            raise ConfigError("`encoder` is required: a model id or folder (e.g. "
                              "sentence-transformers/all-MiniLM-L6-v2).")
        if not self.manifest and not self.dataset:
            raise ConfigError("`manifest` or `dataset` is required: the raw items to encode.")
        if not self.output_dir:
            raise ConfigError("`output_dir` is required: where the embedding files are written.")
        if self.batch_size < 1:
            raise ConfigError(f"`batch_size` must be at least 1, got {self.batch_size}.")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"`max_length` must be at least 1, got {self.max_length}.")
        if self.encoder_library == "sentence_transformers" and self.encoder_type not in (None, "text"):
            raise ConfigError("`encoder_library: sentence_transformers` encodes text only.")
        if self.pooling is not None and self.encoder_library == "sentence_transformers":
            raise ConfigError("`pooling` is set, but sentence-transformers pools as the model says; use "
                              "`encoder_library: transformers` to choose the pooling.")

    @property
    def dataset_names(self) -> list[str]:
        return [name.strip() for name in (self.dataset or "").split(",") if name.strip()]


@dataclass
class RetrieveArguments:
    """Keys of `wmfactory retrieve`: predicted vectors in, the nearest items of a reference bank out."""

    _argument_group_name = "retrieve"

    bank: Optional[str] = field(
        default=None, metadata={"help": "The reference bank: an `output_dir` of `wmfactory encode`."}
    )
    predictions: Optional[str] = field(
        default=None,
        metadata={"help": "predictions.jsonl of `wmfactory predict`, or an embedding file, or a folder of them "
                          "(e.g. predicted_embeddings/)."},
    )
    top_k: int = field(default=5, metadata={"help": "Neighbours per vector, best first."})
    output_file: Optional[str] = field(
        default=None, metadata={"help": "Where the neighbours go (default: retrieved.jsonl beside `predictions`)."}
    )
    show: int = field(default=5, metadata={"help": "Predictions printed with their nearest item."})

    def __post_init__(self):
        if not self.bank:
            raise ConfigError("`bank` is required: the output_dir of `wmfactory encode` holding the reference items.")
        if not self.predictions:
            raise ConfigError("`predictions` is required: predictions.jsonl, an embedding file or a folder of them.")
        if self.top_k < 1:
            raise ConfigError(f"`top_k` must be at least 1, got {self.top_k}.")
