"""Decoding by retrieval: a predicted vector is read as the nearest items of a reference bank encoded with the same
encoder (cosine similarity, top k, with scores). A rollout of sentence embeddings reads as sentences, a rollout of
image embeddings as images."""

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.embeddings import load_embedding
from ..data.provenance import ENCODER_RECORD_FILE
from ..extras.errors import DataError

CHUNK = 4096  # query vectors per matrix product: bounds memory at CHUNK x bank size scores


def unit_rows(matrix: np.ndarray, what: str) -> np.ndarray:
    """`matrix [n, d]` scaled to unit L2 norm per row (float64); a row of norm 0 has no direction: an error."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise DataError(f"{what} {int(zero[0])} is a zero vector: cosine similarity is undefined for it")
    return matrix / norms


def nearest(vectors, bank, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The k bank rows most cosine-similar to each vector, best first.

    `vectors [q, d]` (or `[d]`), `bank [b, d]` -> `(indices [q, k'], scores [q, k'])`, k' = min(k, b); scores are
    cosine similarities in [-1, 1]; equal scores keep the bank's order."""
    vectors, bank = np.atleast_2d(vectors), np.atleast_2d(bank)
    for what, matrix in (("vectors", vectors), ("bank", bank)):
        if matrix.ndim != 2 or matrix.dtype.kind not in "iuf":
            raise DataError(f"the {what} must be a numeric matrix [n, d], got {matrix.dtype} of shape "
                            f"{list(matrix.shape)}")
        if not np.isfinite(matrix).all():
            row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
            verb = "hold" if what == "vectors" else "holds"
            raise DataError(f"the {what} {verb} a value that is not finite (NaN or Inf) in row {row}")
    if len(bank) == 0:
        raise DataError("the bank holds no vector")
    if vectors.shape[1] != bank.shape[1]:
        raise DataError(f"vectors of dimension {vectors.shape[1]} against a bank of dimension {bank.shape[1]}: "
                        "they come from different encoders")
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    queries, keys = unit_rows(vectors, "vector"), unit_rows(bank, "bank vector")
    k = min(k, len(keys))
    indices = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float64)
    for start in range(0, len(queries), CHUNK):
        similarity = queries[start: start + CHUNK] @ keys.T  # [c, b]
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        indices[start: start + CHUNK] = order
        scores[start: start + CHUNK] = np.take_along_axis(similarity, order, axis=1)
    return indices, np.clip(scores, -1.0, 1.0)


@dataclass
class Bank:
    """The items of an `encode` output folder as one matrix: `vectors [b, d]`, with the item (a line of
    items.jsonl) and the vector's index within its item for each row."""

    folder: str
    vectors: np.ndarray
    items: list[dict[str, Any]]  # per row of `vectors`
    positions: list[int]  # per row: which vector of its item (0 for pooled encoders)
    encoder: dict[str, Any]
    sizes: dict[str, int]  # vectors per item id

    def neighbours(self, vectors, k: int = 5) -> list[list[dict[str, Any]]]:
        """For each vector `[q, d]`: its k nearest bank items, `{"id", "score", "text"|"path", "vector"?}`."""
        indices, scores = nearest(vectors, self.vectors, k)
        return [[self.describe(int(i), float(s)) for i, s in zip(row_indices, row_scores)]
                for row_indices, row_scores in zip(indices, scores)]

    def describe(self, index: int, score: float) -> dict[str, Any]:
        item = self.items[index]
        found = {"id": item["id"], "score": round(score, 6)}
        for key in ("text", "path"):
            if key in item:
                found[key] = item[key]
        if self.sizes[item["id"]] > 1:
            found["vector"] = self.positions[index]
        return found


def load_bank(folder: str) -> Bank:
    """Read `items.jsonl`, every item's embedding file and `encoder.json` of an `encode` output folder."""
    items_path = os.path.join(folder, "items.jsonl")
    if not os.path.isfile(items_path):
        raise DataError(f"bank '{folder}': no items.jsonl (a bank is the output_dir of `wmfactory encode`)")
    rows, items, positions, sizes, seen = [], [], [], {}, {}
    with open(items_path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"bank '{folder}', items.jsonl line {number}"
            try:
                item = json.loads(line)
            except (ValueError, RecursionError):
                raise DataError(f"{where}: not valid JSON") from None
            if not (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("file"), str)):
                raise DataError(f"{where}: an item must be a JSON object with the strings `id` and `file`")
            if item["id"] in seen:
                raise DataError(f"{where}: id '{item['id']}' is listed twice (first on line {seen[item['id']]}); "
                                "each item once")
            seen[item["id"]] = number
            try:
                matrix = load_embedding(item["file"], folder)
            except DataError as err:
                raise DataError(f"{where}, file '{item['file']}': {err}") from None
            rows.append(matrix)
            items.extend([item] * len(matrix))
            sizes[item["id"]] = len(matrix)
            positions.extend(range(len(matrix)))
    if not rows:
        raise DataError(f"bank '{folder}': items.jsonl lists no item")
    if len({m.shape[1] for m in rows}) > 1:
        raise DataError(f"bank '{folder}': vectors of different dimensions {sorted({m.shape[1] for m in rows})}")
    encoder = {}
    if os.path.isfile(os.path.join(folder, ENCODER_RECORD_FILE)):
        try:
            with open(os.path.join(folder, ENCODER_RECORD_FILE), encoding="utf-8") as f:
                encoder = json.load(f)
        except (ValueError, RecursionError):
            raise DataError(f"bank '{folder}': {ENCODER_RECORD_FILE} is not valid JSON") from None
    return Bank(folder, np.concatenate(rows), items, positions, encoder, sizes)
