"""The encoder interface of `wmfactory encode`: read one raw item, encode a batch of them into one matrix `[n, d]`
each, and describe itself (the record kept with the data). The text, image and audio encoders register here under
their type; optional packages are imported on use, with an error that names the extra that installs them."""

import contextlib
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..extras.compat import resolved_commit
from ..extras.errors import ConfigError, DataError
from ..extras.registry import registrar
from ..hparams.encode_args import POOLINGS, EncodeArguments
from .items import Item

ENCODE_EXTRA = "pip install 'wmfactory[encode]'"
ENCODERS: dict[str, Callable[[EncodeArguments, "Loaded"], "Encoder"]] = {}
register_encoder = registrar(ENCODERS)


def require(module: str, purpose: str, install: str = ENCODE_EXTRA):
    """Import an optional package, or stop with one line saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs the package `{module}`, which is not installed: {install}") from None


@dataclass
class Loaded:
    """What every encoder needs besides its own model: where and in which dtype it runs."""

    device: Any  # torch.device
    dtype: Any  # torch.dtype


class Encoder:
    """Subclasses set `type`, `library`, `dimension` and implement `read` and `encode_raw`."""

    type: str = ""
    library: str = "transformers"

    def __init__(self, args: EncodeArguments, loaded: Loaded, pooling: Optional[str] = None):
        self.name = args.encoder
        self.revision = args.revision
        self.normalize = args.normalize
        self.dtype_name = args.dtype
        self.device, self.dtype = loaded.device, loaded.dtype
        self.pooling = pooling or args.pooling or POOLINGS[self.type][0]
        if pooling is None and self.pooling not in POOLINGS[self.type]:
            raise ConfigError(f"`pooling` '{self.pooling}' is not one of {', '.join(POOLINGS[self.type])} for a "
                              f"{self.type} encoder.")
        self.dimension = 0

    def read(self, item: Item) -> Any:
        """The raw input of one item (a string, an image, a waveform); DataError naming the item when unreadable."""
        raise NotImplementedError

    def encode_raw(self, raws: list[Any]) -> list[np.ndarray]:
        """A batch of raw inputs -> one float32 matrix `[n_i, d]` per input, before normalisation."""
        raise NotImplementedError

    def encode(self, items: list[Item]) -> list[np.ndarray]:
        """A batch of items -> one float32 matrix `[n_i, d]` each, checked finite, unit norm with `normalize`."""
        matrices = self.encode_raw([self.read(item) for item in items])
        out = []
        for item, matrix in zip(items, matrices):
            matrix = np.asarray(matrix, dtype=np.float32)
            if not np.isfinite(matrix).all():
                raise DataError(f"{item.where()}: the encoder gave values that are not finite (with dtype "
                                f"{self.dtype_name}; float32 avoids overflow)")
            if self.normalize:
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                if (norms == 0).any():
                    raise DataError(f"{item.where()}: a vector of norm 0 cannot be normalized")
                matrix = matrix / norms
            out.append(np.ascontiguousarray(matrix, dtype=np.float32))
        return out

    def record(self) -> dict[str, Any]:
        """What the data keeps about the encoder (encoder.json, dataset_info.json, safetensors metadata)."""
        return {"name": self.name, "revision": self.revision, "type": self.type, "library": self.library,
                "pooling": self.pooling, "normalize": self.normalize, "dimension": self.dimension,
                "dtype": self.dtype_name}


def load_encoder(args: EncodeArguments, encoder_type: str) -> Encoder:
    """The registered encoder of `encoder_type` (the modules text, image and audio register theirs on import)."""
    loaded = Loaded(*device_and_dtype(args.device, args.dtype))
    return ENCODERS[encoder_type](args, loaded)


def device_and_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"`device` '{device}' is not a device (cpu, cuda, cuda:1, mps, auto).") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {device}, but torch sees no CUDA device.")
    return resolved, {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def from_pretrained(auto_class, what: str, args: EncodeArguments, **kwargs):
    """`auto_class.from_pretrained(encoder)`, quietly; a folder or id that holds no such thing is one line."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # load reports of heads the encoder does not use (pooler, lm head)
    hf_logging.disable_progress_bar()
    try:
        return auto_class.from_pretrained(args.encoder, revision=args.revision,
                                          trust_remote_code=args.trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        where = "a local folder" if os.path.isdir(args.encoder) else "not a local folder, so a hub id"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"`encoder` '{args.encoder}' ({where}): cannot load its {what}: {detail}") from None
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(args: EncodeArguments, loaded: Loaded):
    """The encoder network (`AutoModel`) in eval mode on its device and dtype."""
    from transformers import AutoModel

    model = from_pretrained(AutoModel, "model", args, dtype=loaded.dtype)
    return model.to(loaded.device).eval()


def resolved_revision(args: EncodeArguments, model) -> Optional[str]:
    """The revision asked for, else the commit a hub download resolved to (None for a local folder)."""
    return args.revision or resolved_commit(model.config)


@contextlib.contextmanager
def inference():
    import torch

    with torch.inference_mode():
        yield


def hidden_size(config) -> int:
    for owner in (config, getattr(config, "vision_config", None), getattr(config, "text_config", None)):
        if owner is not None and isinstance(getattr(owner, "hidden_size", None), int):
            return owner.hidden_size
    raise ConfigError(f"cannot tell the encoder's vector size: its config ({type(config).__name__}) has no "
                      "hidden_size")
