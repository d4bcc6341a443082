"""`wmfactory.Client`: the HTTP API of `wmfactory api` as Python calls that return numpy arrays, so that notebook
code reads as it does with a local `WorldModel` (`rollout`, `predict_next`, `nearest`, `plan`). Needs only httpx
and numpy. Rows are dicts in the dataset format whose `embeddings` hold arrays (numpy arrays are sent as base64);
an error the server reports as the caller's (4xx) is raised as `DataError` with the server's message."""

import base64
import json
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

import numpy as np

from ..extras.errors import DataError


@dataclass
class PlanResult:
    actions: np.ndarray  # [horizon, d_a]
    states: Union[np.ndarray, dict[str, np.ndarray]]  # [horizon, d_s], or per predicted stream
    cost: float
    costs: np.ndarray  # [iterations]


@dataclass
class GroupPrediction:
    group: int
    key: str
    occurrence: int
    stream: str
    predicted: np.ndarray  # [n, d]
    target: np.ndarray  # [n, d]
    samples: Optional[np.ndarray] = None  # [S, n, d]


class ServerError(RuntimeError):
    """The server failed (5xx) or could not be reached."""


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: Optional[str] = None,
                 timeout: float = 120.0):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the endpoints --------------------------------------------------------------------------------------------
    def health(self) -> bool:
        return self.http.get("/v1/health").status_code == 200

    def model_card(self) -> dict:
        return self._answer(self.http.get("/v1/models"))["data"][0]

    def rollout(self, row: dict, steps: int, context_groups: Optional[int] = None,
                num_samples: Optional[int] = None, temperature: Optional[float] = None, seed: Optional[int] = None,
                conditions: Optional[dict[str, Any]] = None, pattern: Optional[list[str]] = None):
        """`[steps, d]`, `[S, steps, d]` with `num_samples`, or `{stream: array}` with several predicted streams."""
        answer = self._post("/v1/rollout", self._rollout_body(row, steps, context_groups, num_samples, temperature,
                                                              seed, conditions, pattern))
        return _arrays(answer["vectors"])

    def stream_rollout(self, row: dict, steps: int, **options) -> Iterator[tuple[str, np.ndarray]]:
        """`(stream, vector)` per predicted step, as the server makes them (server-sent events)."""
        body = self._rollout_body(row, steps, **options)
        body["stream"] = True
        with self.http.stream("POST", "/v1/rollout", json=body) as response:
            if response.status_code != 200:
                response.read()
                self._answer(response)
            event = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                    if event == "vector":
                        yield data["stream"], np.asarray(data["vector"], dtype=np.float32)
                    elif event == "error":
                        raise ServerError(data["error"]["message"])
                    elif event == "done":
                        return

    def predict_next(self, row: dict, num_samples: Optional[int] = None, temperature: Optional[float] = None,
                     seed: Optional[int] = None) -> list[GroupPrediction]:
        answer = self._post("/v1/predict_next", _without_none(
            row=_row_body(row), num_samples=num_samples, temperature=temperature, seed=seed))
        return [GroupPrediction(group["group"], group["key"], group["occurrence"], group["stream"],
                                _arrays(group["predicted"]), _arrays(group["target"]),
                                _arrays(group["samples"]) if "samples" in group else None)
                for group in answer["groups"]]

    def nearest(self, vectors, k: int = 5) -> list[list[dict[str, Any]]]:
        """Per vector `[q, d]`, its k nearest items of the server's bank: `{"id", "score", "text" or "path"}`."""
        return self._post("/v1/nearest", {"vectors": _array_body(vectors), "k": k})["neighbours"]

    def plan(self, row: dict, horizon: int = 15, goal=None, weights=None, **options) -> PlanResult:
        """`WorldModel.plan` on the server, towards `goal` (a vector, or `{stream: vector}`); no cost function can
        be sent, only the built-in goal cost. `options`: action_stream, low, high, method, candidates, iterations,
        elites, seed, warm_start, num_samples, risk, alpha, temperature."""
        if goal is None:
            raise DataError("`goal` is required over HTTP: a Python cost function cannot be sent to the server.")
        body = _without_none(row=_row_body(row), horizon=horizon, goal=_streams_body(goal),
                             weights=None if weights is None else _streams_body(weights), **{
                                 key: _array_body(value) if isinstance(value, np.ndarray) else value
                                 for key, value in options.items()})
        answer = self._post("/v1/plan", body)
        return PlanResult(_arrays(answer["actions"]), _arrays(answer["states"]), float(answer["cost"]),
                          _arrays(answer["costs"]))

    # ---- transport ------------------------------------------------------------------------------------------------
    def _rollout_body(self, row, steps, context_groups=None, num_samples=None, temperature=None, seed=None,
                      conditions=None, pattern=None) -> dict:
        return _without_none(row=_row_body(row), steps=steps, context_groups=context_groups,
                             num_samples=num_samples, temperature=temperature, seed=seed, pattern=pattern,
                             conditions=None if conditions is None else {
                                 name: _array_body(values) for name, values in conditions.items()})

    def _post(self, path: str, body: dict) -> dict:
        return self._answer(self.http.post(path, json=body))

    @staticmethod
    def _answer(response) -> dict:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 200 and answer is not None:
            return answer
        message = (answer or {}).get("error", {}).get("message", response.text[:300]) if isinstance(answer, dict) \
            else response.text[:300]
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429, 504):
            raise DataError(f"the server refused the request ({response.status_code}): {message}")
        raise ServerError(f"the server answered {response.status_code}: {message}")


def _without_none(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def _array_body(values) -> Any:
    """numpy arrays -> `{"b64", "dtype", "shape"}` (float32, little-endian); lists as they are."""
    if isinstance(values, np.ndarray) or hasattr(values, "numpy"):
        array = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
        return {"b64": base64.b64encode(array.tobytes()).decode("ascii"), "dtype": "float32",
                "shape": list(array.shape)}
    return values


def _streams_body(values) -> Any:
    if isinstance(values, dict):
        return {name: _array_body(array) for name, array in values.items()}
    return _array_body(values)


def _row_body(row: dict) -> dict:
    embeddings = row.get("embeddings")
    if not isinstance(embeddings, dict):
        return row
    for key, entries in embeddings.items():
        if any(isinstance(entry, str) for entry in entries or []):
            raise DataError(f"row.embeddings['{key}'] names a file: the server reads no files, send the vectors "
                            "(load them with numpy first).")
    return {**row, "embeddings": {key: [_array_body(entry) for entry in entries]
                                  for key, entries in embeddings.items()}}


def _arrays(values) -> Union[np.ndarray, dict[str, np.ndarray]]:
    if isinstance(values, dict):
        return {name: np.asarray(array, dtype=np.float32) for name, array in values.items()}
    return np.asarray(values, dtype=np.float32)
