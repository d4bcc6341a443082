"""Readers for embedding files. Each returns a float32 matrix `[n, d]` (n >= 1 vectors of dimension d) or raises
DataError naming the file and the reason. Nothing is ever replaced by zeros, and nothing in a file is executed."""

import json
import os
from typing import Any, Callable

import numpy as np

from ..extras.errors import DataError

EmbeddingReader = Callable[[str], np.ndarray]
EMBEDDING_READERS: dict[str, EmbeddingReader] = {}


def register_reader(*suffixes: str):
    def decorator(reader: EmbeddingReader) -> EmbeddingReader:
        for suffix in suffixes:
            EMBEDDING_READERS[suffix] = reader
        return reader

    return decorator


@register_reader(".json")
def read_json(path: str) -> np.ndarray:
    """The seed format: `{"embedding": [[...], ...], "shape": [n, d], "description": ..., "modality": ...}`."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err})") from None
    if not isinstance(content, dict) or "embedding" not in content:
        raise DataError("no `embedding` field")
    matrix = _as_matrix(content["embedding"])
    shape = content.get("shape")
    if shape is not None and list(shape) != list(matrix.shape) and not (
        len(shape) == 1 and matrix.shape[0] == 1 and list(shape) == [matrix.shape[1]]
    ):
        raise DataError(f"`shape` says {list(shape)} but the data is {list(matrix.shape)}")
    return matrix


@register_reader(".npy")
def read_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DataError(f"cannot read .npy without pickle ({err})") from None
    return _as_matrix(array)


@register_reader(".safetensors")
def read_safetensors(path: str) -> np.ndarray:
    from safetensors.numpy import load_file

    tensors = load_file(path)
    if "embedding" in tensors:
        return _as_matrix(tensors["embedding"])
    if len(tensors) != 1:
        raise DataError(f"holds {len(tensors)} tensors; name the one to use `embedding`")
    return _as_matrix(next(iter(tensors.values())))


@register_reader(".pt", ".pth")
def read_torch(path: str) -> np.ndarray:
    import pickle

    import torch

    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(f"refused to load: not a plain tensor file ({str(err).splitlines()[0]})") from None
    if isinstance(tensor, dict):
        if "embedding" not in tensor:
            raise DataError("a dict without an `embedding` tensor")
        tensor = tensor["embedding"]
    if not isinstance(tensor, torch.Tensor):
        raise DataError(f"holds a {type(tensor).__name__}, not a tensor")
    return _as_matrix(tensor.detach().float().numpy())


def _as_matrix(data: Any) -> np.ndarray:
    try:
        matrix = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError("values are not a numeric matrix") from None
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise DataError(f"expected a vector or a matrix [n, d], got {matrix.ndim} dimensions")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise DataError(f"empty embedding (shape {list(matrix.shape)})")
    if not np.isfinite(matrix).all():
        raise DataError("values are not all finite (NaN or Inf)")
    return matrix


def resolve_path(entry: str, media_dir: str) -> str:
    """Relative paths resolve against `media_dir` and may not leave it; absolute paths are the user's choice."""
    if os.path.isabs(entry):
        return entry
    root = os.path.realpath(media_dir)
    path = os.path.realpath(os.path.join(root, entry))
    if os.path.commonpath([root, path]) != root:
        raise DataError(f"relative path escapes media_dir '{media_dir}'")
    return path


def load_embedding(entry: Any, media_dir: str) -> np.ndarray:
    """One entry of a row's `embeddings` list -> `[n, d]`. An entry is a file path, or (from Python) array-like."""
    if not isinstance(entry, str):
        return _as_matrix(entry)
    path = resolve_path(entry, media_dir)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in EMBEDDING_READERS:
        raise DataError(f"unsupported file type '{suffix}' (supported: {', '.join(sorted(EMBEDDING_READERS))})")
    if not os.path.isfile(path):
        raise DataError("file not found")
    return EMBEDDING_READERS[suffix](path)
