"""Writing embedding files byte for byte the same on every run: `.safetensors` (one float32 tensor `embedding`
`[n, d]`, the encoder record and the item id as metadata, the header's keys sorted) or `.npy`. A file is written under
a temporary name and renamed when complete, so a file that exists is whole (what resuming relies on)."""

import json

import numpy as np

from ..extras.atomic import write_bytes

EMBEDDING_FORMATS = ("safetensors", "npy")


def safetensors_bytes(matrix: np.ndarray, metadata: dict[str, str]) -> bytes:
    """The .safetensors file of one float32 tensor named `embedding` (`matrix [n, d]`): an 8-byte little-endian
    header length, the JSON header padded with spaces to 8 bytes, then the little-endian data."""
    data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    header = {"__metadata__": dict(sorted(metadata.items())),
              "embedding": {"dtype": "F32", "shape": list(matrix.shape), "data_offsets": [0, len(data)]}}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def npy_bytes(matrix: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype="<f4"), allow_pickle=False)
    return buffer.getvalue()


def write_embedding_file(path: str, matrix: np.ndarray, metadata: dict[str, str]) -> None:
    """`matrix [n, d]` float32 -> `path` (.safetensors or .npy), atomically."""
    content = safetensors_bytes(matrix, metadata) if path.endswith(".safetensors") else npy_bytes(matrix)
    write_bytes(path, content)


def write_json(path: str, content) -> None:
    """Indented, keys in their given order, a final newline: the same bytes for the same content."""
    write_bytes(path, (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
