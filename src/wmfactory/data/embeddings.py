"""Readers for embedding files. Each returns a float32 matrix `[n, d]` (n >= 1 vectors of dimension d) or raises
DataError naming the reason (the caller adds the file). Nothing is ever replaced by zeros, nothing is converted
silently (no booleans, strings or complex numbers as floats, no inf from a value too large for float32), sizes claimed
by a header are checked against the file before anything is allocated, and nothing in a file is executed."""

import json
import math
import os
from tokenize import TokenError
from typing import Any, Callable

import numpy as np

from ..extras.errors import DataError
from ..extras.registry import registrar

EmbeddingReader = Callable[[str], np.ndarray]
EMBEDDING_READERS: dict[str, EmbeddingReader] = {}
register_reader = registrar(EMBEDDING_READERS)

MAX_JSON_BYTES = 1 << 30  # a JSON matrix takes about 20x its float32 size in memory while it is parsed
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes; safetensors refuses larger headers too
SAFETENSORS_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "I16": 16, "U16": 16, "F16": 16,
                    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "I64": 64, "U64": 64, "F64": 64}
NON_REAL_KINDS = {"b": "booleans", "c": "complex numbers", "M": "datetimes", "m": "time spans", "U": "strings",
                  "S": "bytes", "O": "Python objects", "V": "raw or structured records"}


@register_reader(".json")
def read_json(path: str) -> np.ndarray:
    """The seed format: `{"embedding": [[...], ...], "shape": [n, d], "description": ..., "modality": ...}`."""
    size = os.path.getsize(path)
    if size > MAX_JSON_BYTES:
        raise DataError(f"a JSON embedding file of {size / 2**30:.1f} GiB (at most {MAX_JSON_BYTES // 2**30} GiB): "
                        "store large matrices as .npy or .safetensors")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not valid UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()):
            raise DataError(f"malformed JSON: the file is truncated ({err.msg} at its end)") from None
        raise DataError(f"malformed JSON ({err})") from None
    except RecursionError:
        raise DataError("malformed JSON (nested too deeply)") from None
    except ValueError as err:  # an integer of more digits than Python converts (`sys.get_int_max_str_digits`)
        raise DataError(f"malformed JSON ({str(err).split(':')[0]})") from None
    if not isinstance(content, dict) or "embedding" not in content:
        raise DataError("no `embedding` field")
    if isinstance(content["embedding"], str):
        raise DataError("`embedding` is a string, not a list of numbers (drop the quotes)")
    matrix = _from_lists(content["embedding"])
    shape = content.get("shape")
    if shape is None:
        return matrix
    if not isinstance(shape, list) or not all(type(s) is int for s in shape):
        raise DataError(f"`shape` must be a list of integers, got {json.dumps(shape)[:40]}")
    if shape != list(matrix.shape) and not (len(shape) == 1 and matrix.shape[0] == 1 and shape == [matrix.shape[1]]):
        raise DataError(f"`shape` says {shape} but the data is {list(matrix.shape)}")
    return matrix


@register_reader(".npy")
def read_npy(path: str) -> np.ndarray:
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            header = read_header(f) if read_header else None
        except (ValueError, SyntaxError, TokenError) as err:  # numpy parses the header as a Python literal
            raise DataError(f"not a valid .npy file ({_short(err) if isinstance(err, ValueError) else 'bad header'})"
                            ) from None
        if header is None:
            raise DataError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _, dtype = header
        if dtype.hasobject:
            raise DataError("cannot read .npy without pickle (it holds Python objects)")
        if not all(type(s) is int and s >= 0 for s in shape):
            raise DataError(f"not a valid .npy file (shape {shape} in the header)")
        claimed, held = math.prod(shape) * dtype.itemsize, os.path.getsize(path) - f.tell()
        if claimed > held:
            raise DataError(f"truncated .npy file: its header claims {claimed} bytes of data, the file holds {held}")
        f.seek(0)
        try:
            array = fmt.read_array(f, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"not a valid .npy file ({_short(err)})") from None
    return _to_matrix(array)


@register_reader(".safetensors")
def read_safetensors(path: str) -> np.ndarray:
    """Header (8-byte little-endian length, then JSON) checked against the file size first; then one tensor is read
    with torch, which, unlike numpy, holds bf16."""
    from safetensors import SafetensorError, safe_open

    size = os.path.getsize(path)
    if size < 8:
        raise DataError("truncated .safetensors file (shorter than the 8 bytes giving its header's length)")
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > MAX_SAFETENSORS_HEADER:
            raise DataError(f"not a valid .safetensors file: its header claims {length} bytes (at most 100 MB)")
        if length > size - 8:
            raise DataError(f"truncated .safetensors file: its header claims {length} bytes, the file holds {size - 8}")
        raw_header = f.read(length)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError("not a valid .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise DataError("not a valid .safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for name, entry in header.items():
        entry = entry if isinstance(entry, dict) else {}
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(dtype, str) and isinstance(shape, list) and len(shape) <= 64 and isinstance(offsets, list)
                and len(offsets) == 2 and all(type(n) is int and n >= 0 for n in shape + offsets)
                and offsets[0] <= offsets[1]):
            raise DataError(f"not a valid .safetensors file (bad header entry for tensor '{name}')")
        if offsets[1] > data_size:
            raise DataError(f"truncated .safetensors file: tensor '{name}' ends at byte {offsets[1]} of its data, "
                            f"the file holds {data_size}")
        needed = math.prod(shape) * SAFETENSORS_BITS.get(dtype, 0) // 8
        if dtype in SAFETENSORS_BITS and needed != offsets[1] - offsets[0]:
            raise DataError(f"not a valid .safetensors file: tensor '{name}' ({dtype} {shape}) needs {needed} "
                            f"bytes, its data_offsets give {offsets[1] - offsets[0]}")
    if "embedding" not in header and len(header) != 1:
        raise DataError(f"holds {len(header)} tensors; name the one to use `embedding`")
    name = "embedding" if "embedding" in header else next(iter(header))
    try:
        with safe_open(path, framework="pt") as f:
            tensor = f.get_tensor(name)
    except (SafetensorError, RuntimeError, TypeError, ValueError) as err:
        raise DataError(f"not a valid .safetensors file ({_short(err)})") from None
    return _from_tensor(tensor)


@register_reader(".pt", ".pth")
def read_torch(path: str) -> np.ndarray:
    import pickle

    import torch

    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused it (a class, a function), or the pickle is corrupt
        detail = _short(str(err).split("WeightsUnpickler error:")[-1])
        if "Unsupported operand" in detail:
            raise DataError(f"not a valid .pt file (corrupt pickle: {detail})") from None
        raise DataError(f"refused to load: not a plain tensor file ({detail})") from None
    except EOFError:
        raise DataError("truncated .pt file (it ends early)") from None
    except Exception as err:  # re-raised with its reason: on damaged bytes torch.load raises almost anything:
        # RuntimeError, KeyError, IndexError, TypeError, AttributeError, struct.error, even AssertionError
        raise DataError(f"not a valid .pt file ({type(err).__name__}: {_short(err)})") from None
    if isinstance(tensor, dict):
        if "embedding" not in tensor:
            raise DataError("a dict without an `embedding` tensor")
        tensor = tensor["embedding"]
    if not isinstance(tensor, torch.Tensor):
        raise DataError(f"holds a {type(tensor).__name__}, not a tensor")
    return _from_tensor(tensor)


def _from_tensor(tensor) -> np.ndarray:
    """A torch tensor -> the checked matrix. Floating types numpy lacks (bf16, fp8) become float32, exactly."""
    import torch

    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        tensor = tensor.float()
    try:
        array = tensor.numpy()
    except (TypeError, RuntimeError) as err:
        raise DataError(f"cannot read a tensor of dtype {str(tensor.dtype).removeprefix('torch.')} ({_short(err)})"
                        ) from None
    return _to_matrix(array)


def _from_lists(value: Any) -> np.ndarray:
    """Nested lists of numbers (JSON, Python) -> the checked matrix. Booleans, strings and null are refused."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
            kind = {bool: "a boolean", str: "a string", type(None): "null"}.get(type(item), f"a {type(item).__name__}")
            raise DataError(f"values are not a numeric matrix (found {kind}: {repr(item)[:30]})")
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:
        raise DataError("values do not fit in float32 (an integer beyond even float64)") from None
    except ValueError as err:
        reason = "nested lists of different lengths" if "inhomogeneous" in str(err) else _short(err)
        raise DataError(f"values are not a numeric matrix ({reason})") from None
    return _to_matrix(array)


def _to_matrix(array: np.ndarray) -> np.ndarray:
    """Any array -> float32 `[n, d]`: real numbers only (integers included), no Inf, all within float32's range.
    NaN (a missing value) passes here; `load_embedding` refuses it unless `missing_values` is `mask`."""
    if array.dtype.kind not in "iuf":
        reason = NON_REAL_KINDS.get(array.dtype.kind, "no numbers")
        raise DataError(f"dtype {array.dtype} is not a real number type (it holds {reason})")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise DataError(f"expected a vector or a matrix [n, d], got {array.ndim} dimensions")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"empty embedding (shape {list(array.shape)})")
    if array.dtype.kind == "f" and np.isinf(array).any():
        raise DataError("values are not all finite (NaN or Inf)")
    with np.errstate(over="ignore"):
        matrix = array.astype(np.float32, copy=False)
    if np.isinf(matrix).any():
        largest = float(np.abs(array[np.isinf(matrix)]).max())
        raise DataError(f"values do not fit in float32 (found {largest:.3g}; float32 holds up to 3.4e+38)")
    return matrix


def _short(err: Any) -> str:
    """The first sentence of an exception's message, for a one-line reason."""
    text = str(err).strip().split("\n")[0].split(". ")[0].strip()
    return text[:200] or type(err).__name__


def resolve_path(entry: str, media_dir: str, allow_outside: bool = False) -> str:
    """The file a row names. Paths resolve against `media_dir` (symlinks followed) and must stay inside it, unless
    `allow_outside` (the dataset's entry says `allow_outside_media_dir: true`): then absolute paths are read as given
    and relative ones may leave the folder."""
    if "\0" in entry:
        raise DataError("the path holds a NUL byte, which no file name can")
    if allow_outside:
        return entry if os.path.isabs(entry) else os.path.join(media_dir, entry)
    root = os.path.realpath(media_dir)
    path = os.path.realpath(os.path.join(root, entry))
    if os.path.commonpath([root, path]) != root:
        kind = "absolute path is outside" if os.path.isabs(entry) else "relative path escapes"
        raise DataError(f"{kind} media_dir '{media_dir}' (symlinks followed); set `allow_outside_media_dir: true` in "
                        "the dataset's entry of dataset_info.json to read files elsewhere")
    return path


MISSING_VALUES = ("refuse", "mask")  # NaN entries: an error, or missing values the model masks


def load_embedding(entry: Any, media_dir: str, allow_outside: bool = False, missing_values: str = "refuse"
                   ) -> np.ndarray:
    """One entry of a row's `embeddings` list -> `[n, d]`. An entry is a file path (see `resolve_path`), or (from
    Python) array-like. With `missing_values: mask` a NaN entry is a missing value and is kept as NaN; otherwise it
    is refused."""
    matrix = _load(entry, media_dir, allow_outside)
    if missing_values != "mask" and np.isnan(matrix).any():
        raise DataError("values are not all finite (NaN or Inf)")
    return matrix


def _load(entry: Any, media_dir: str, allow_outside: bool) -> np.ndarray:
    if not isinstance(entry, str):
        if isinstance(entry, (list, tuple)):
            return _from_lists(entry)
        try:
            array = np.asarray(entry)
        except (TypeError, ValueError) as err:
            raise DataError(f"values are not a numeric matrix ({_short(err)})") from None
        return _to_matrix(array)
    path = resolve_path(entry, media_dir, allow_outside)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in EMBEDDING_READERS:
        raise DataError(f"unsupported file type '{suffix}' (supported: {', '.join(sorted(EMBEDDING_READERS))})")
    if not os.path.isfile(path):
        raise DataError("file not found")
    try:
        if os.path.getsize(path) == 0:
            raise DataError("file is empty")
        return EMBEDDING_READERS[suffix](path)
    except OSError as err:
        raise DataError(f"cannot read the file ({err.strerror or _short(err)})") from None
