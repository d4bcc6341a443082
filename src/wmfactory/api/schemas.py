"""What a request may hold, checked before the model sees it: the request bodies as pydantic models (unknown fields
refused), and the arrays inside them decoded from JSON lists or base64 (`{"b64", "dtype", "shape"}`, as OpenAI's
`encoding_format: base64`). A row's `embeddings` must hold the vectors themselves: a file path is refused, since the
server never reads a file that a request names."""

import base64
import binascii
import json
import math
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ApiError

B64_DTYPES = ("float16", "float32", "float64")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class RolloutRequest(Request):
    row: dict[str, Any]
    steps: int = Field(ge=1)
    context_groups: Optional[int] = Field(default=None, ge=0)
    conditions: Optional[dict[str, Any]] = None  # {stream: array [k, d]}
    pattern: Optional[list[str]] = None
    num_samples: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, gt=0)
    seed: Optional[int] = None
    from_last_vector: bool = False
    stream: bool = False


class PredictNextRequest(Request):
    row: dict[str, Any]
    num_samples: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, gt=0)
    seed: Optional[int] = None


class NearestRequest(Request):
    vectors: Any  # [q, d] or [d]
    k: int = Field(default=5, ge=1, le=1000)


class PlanRequest(Request):
    row: dict[str, Any]
    horizon: int = Field(default=15, ge=1)
    goal: Any  # [d_s] or {stream: [d_s]}
    weights: Any = None  # like goal
    action_stream: Optional[str] = None
    low: Union[float, list[float]] = -1.0
    high: Union[float, list[float]] = 1.0
    method: Literal["cem", "mppi"] = "cem"
    candidates: int = Field(default=128, ge=1)
    iterations: int = Field(default=3, ge=1)
    elites: Optional[int] = Field(default=None, ge=1)
    mppi_temperature: float = Field(default=1.0, gt=0)
    context_groups: Optional[int] = Field(default=None, ge=0)
    from_last_vector: bool = False
    conditions: Optional[dict[str, Any]] = None  # other condition streams, shared by every candidate
    pattern: Optional[list[str]] = None
    seed: Optional[int] = None
    warm_start: Any = None  # [horizon, d_a]
    num_samples: Optional[int] = Field(default=None, ge=1)
    risk: Literal["mean", "cvar"] = "mean"
    alpha: float = Field(default=0.1, gt=0, le=1)
    temperature: Optional[float] = Field(default=None, gt=0)


def parse_body(body: bytes, model: type[Request]) -> Request:
    """The request body -> the request; bad JSON is a 400, a field that is missing, mistyped, out of range or
    unknown a 422 that names it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f" (line {err.lineno}, column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
        raise ApiError(400, f"the body is not valid JSON: {reason}{where}", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ApiError(422, "; ".join(_describe(error) for error in err.errors()[:5]), "invalid_field") from None


def _describe(error: dict) -> str:
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown field `{name}`"
    if error["type"] == "missing":
        return f"`{name}` is required"
    return f"`{name}`: {error['msg']}"


def decode_array(value: Any, name: str, ndim: tuple[int, ...] = (1, 2), missing: bool = False) -> np.ndarray:
    """A JSON array of numbers (nested lists) or `{"b64", "dtype", "shape"}` -> a finite float32 array whose number
    of dimensions is one of `ndim`. With `missing` (a history's vectors, for a model trained with `missing_values:
    mask`), an entry may be missing: `null` in a list, NaN in base64; never an infinity."""
    if isinstance(value, dict):
        array = _from_base64(value, name)
    elif isinstance(value, (list, int, float)) and not isinstance(value, bool):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ApiError(422, f"`{name}` must be numbers in a rectangular array", "invalid_field") from None
    elif isinstance(value, str):
        raise ApiError(422, f"`{name}` is a string: send the numbers themselves (a list of floats, or "
                            "{\"b64\", \"dtype\", \"shape\"}); the server never reads files a request names",
                       "invalid_field")
    else:
        raise ApiError(422, f"`{name}` must be a list of numbers or {{\"b64\", \"dtype\", \"shape\"}}",
                       "invalid_field")
    if array.ndim not in ndim or array.size == 0:
        raise ApiError(422, f"`{name}` must be a non-empty array of {' or '.join(map(str, ndim))} dimension(s), got "
                            f"shape {list(array.shape)}", "invalid_field")
    if missing and np.isinf(array).any():
        raise ApiError(422, f"`{name}` holds an infinity (a missing entry is null)", "invalid_field")
    if not missing and not np.isfinite(array).all():
        raise ApiError(422, f"`{name}` holds NaN or infinity (null: missing entries need a model trained with "
                            "`missing_values: mask`)", "invalid_field")
    return array.astype(np.float32)


def _from_base64(value: dict, name: str) -> np.ndarray:
    if set(value) != {"b64", "dtype", "shape"}:
        raise ApiError(422, f"`{name}`: a base64 array is {{\"b64\", \"dtype\", \"shape\"}}, got keys {sorted(value)}",
                       "invalid_field")
    dtype, shape = value["dtype"], value["shape"]
    if dtype not in B64_DTYPES:
        raise ApiError(422, f"`{name}.dtype` must be one of {', '.join(B64_DTYPES)}, got {dtype!r}", "invalid_field")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 3 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ApiError(422, f"`{name}.shape` must be 1 to 3 positive integers, got {shape!r}", "invalid_field")
    try:
        raw = base64.b64decode(value["b64"], validate=True) if isinstance(value["b64"], str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None:
        raise ApiError(422, f"`{name}.b64` is not base64 text", "invalid_field")
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise ApiError(422, f"`{name}`: {len(raw)} bytes do not hold shape {shape} of {dtype} "
                            f"({math.prod(shape) * itemsize} bytes)", "invalid_field")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(np.float64)


def decode_row(row: dict[str, Any], name: str = "row", missing: bool = False) -> dict[str, Any]:
    """A row in the dataset format whose `embeddings` entries are arrays -> the same row with float32 matrices;
    messages are left for the model's own row reader, which names what is wrong with them. `missing`: entries may
    be missing (`decode_array`)."""
    embeddings = row.get("embeddings")
    if not isinstance(embeddings, dict) or not embeddings:
        raise ApiError(422, f"`{name}.embeddings` must be an object {{key: [vectors, ...]}} holding the row's vectors",
                       "invalid_field")
    decoded = {}
    for key, entries in embeddings.items():
        if not isinstance(entries, list) or not entries:
            raise ApiError(422, f"`{name}.embeddings.{key}` must be a list with one entry per <{key}> of the "
                                "messages", "invalid_field")
        decoded[key] = [decode_array(entry, f"{name}.embeddings.{key}[{i}]", missing=missing)
                        for i, entry in enumerate(entries)]
    return {**row, "embeddings": decoded}


def decode_streams(value: Any, name: str, ndim: tuple[int, ...]) -> Union[np.ndarray, dict[str, np.ndarray]]:
    """An array, or `{stream: array}` (a goal per predicted stream): `{"b64", ...}` is an array, not streams."""
    if isinstance(value, dict) and "b64" not in value:
        return {stream: decode_array(array, f"{name}.{stream}", ndim) for stream, array in value.items()}
    return decode_array(value, name, ndim)


def listed(value: Any) -> Any:
    """Arrays (or `{stream: array}`) -> nested lists of floats, for a JSON answer."""
    if isinstance(value, dict):
        return {name: listed(array) for name, array in value.items()}
    return np.asarray(value, dtype=np.float64).tolist()
