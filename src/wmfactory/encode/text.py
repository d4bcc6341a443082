"""Text encoders: a `transformers` AutoModel with mean or CLS pooling over its last hidden states, or a
sentence-transformers model with its own pooling (`encoder_library: sentence_transformers`)."""

from typing import Any

import numpy as np

from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..hparams.encode_args import EncodeArguments
from .encoders import Encoder, Loaded, resolved_revision, from_pretrained, hidden_size, inference, load_model, register_encoder, require
from .items import Item

logger = get_logger(__name__)
MAX_TEXT_TOKENS = 512  # the default `max_length` when the tokenizer claims more (BERT-style encoders stop there)


def read_text(item: Item) -> str:
    """Inline text, or a .txt file read as UTF-8; empty text is an error."""
    if item.text is not None:
        text = item.text
    else:
        try:
            with open(item.path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as err:
            raise DataError(f"{item.where()}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                            f"{err.start})") from None
        except OSError as err:
            raise DataError(f"{item.where()}: cannot read the file ({err.strerror})") from None
    if not text.strip():
        raise DataError(f"{item.where()}: empty text")
    return text


def mean_pool(hidden, mask):
    """`hidden [b, t, h]`, `mask [b, t]` (1 for tokens) -> the mean over each row's tokens `[b, h]`, float32."""
    mask = mask.to(hidden.device, dtype=hidden.dtype).unsqueeze(-1).float()
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1)


class TextEncoder(Encoder):
    type = "text"

    def __init__(self, args: EncodeArguments, loaded: Loaded):
        from transformers import AutoTokenizer

        super().__init__(args, loaded)
        self.tokenizer = from_pretrained(AutoTokenizer, "tokenizer", args)
        self.model = load_model(args, loaded)
        self.revision = resolved_revision(args, self.model)
        self.dimension = hidden_size(self.model.config)
        limits = [MAX_TEXT_TOKENS, self.tokenizer.model_max_length,
                  getattr(self.model.config, "max_position_embeddings", MAX_TEXT_TOKENS)]
        self.max_length = args.max_length or min(limit for limit in limits if isinstance(limit, int))
        self.truncated = 0

    def read(self, item: Item) -> str:
        return read_text(item)

    def encode_raw(self, raws: list[str]) -> list[np.ndarray]:
        tokens = self.tokenizer(raws, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        encodings = getattr(tokens, "encodings", None) or []
        self.truncated += sum(bool(encoding.overflowing) for encoding in encodings)
        with inference():
            hidden = self.model(**tokens.to(self.device)).last_hidden_state  # [b, t, h]
            pooled = hidden[:, 0].float() if self.pooling == "cls" else mean_pool(hidden, tokens["attention_mask"])
        return [vector[None] for vector in pooled.cpu().numpy()]

    def finish(self) -> None:
        if self.truncated:
            logger.warning(f"{self.truncated} text(s) longer than {self.max_length} tokens were cut to their first "
                           f"{self.max_length} tokens (`max_length`).")


@register_encoder("text")
def build_text_encoder(args: EncodeArguments, loaded: Loaded) -> Encoder:
    if args.encoder_library == "sentence_transformers":
        return SentenceTransformerEncoder(args, loaded)
    return TextEncoder(args, loaded)


class SentenceTransformerEncoder(Encoder):
    """The model's own sentence-transformers pipeline (its pooling and, when it has one, its Normalize module)."""

    type = "text"
    library = "sentence_transformers"

    def __init__(self, args: EncodeArguments, loaded: Loaded):
        module = require("sentence_transformers", "`encoder_library: sentence_transformers`",
                         "pip install sentence-transformers")
        super().__init__(args, loaded, pooling="sentence_transformers")
        self.batch_size = args.batch_size
        self.model = module.SentenceTransformer(args.encoder, device=str(loaded.device), revision=args.revision,
                                                trust_remote_code=args.trust_remote_code).to(loaded.dtype)
        if args.max_length:
            self.model.max_seq_length = args.max_length
        self.dimension = int(self.model.get_sentence_embedding_dimension())

    def read(self, item: Item) -> str:
        return read_text(item)

    def encode_raw(self, raws: list[str]) -> list[Any]:
        vectors = self.model.encode(raws, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return [np.asarray(vector, dtype=np.float32)[None] for vector in vectors]
