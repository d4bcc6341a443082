"""The HTTP API of a world model (FastAPI): the routes, the key, the limits on bodies and time, and the one log
line per request. Every model call goes through the `Engine` (one worker thread, dynamic batching); the routes
only check and decode what arrives and encode what leaves.

    GET  /v1/health        200 once the model is loaded (no key needed)
    GET  /v1/models        the model card: streams, head, context length, normalisation, version
    GET  /v1/stats         the engine's counters: rollout calls by batch size
    POST /v1/rollout       {"row", "steps", ...} -> {"vectors"} (or server-sent events with "stream": true)
    POST /v1/predict_next  {"row"} -> {"groups": [...]} teacher-forced
    POST /v1/nearest       {"vectors", "k"} -> {"neighbours"} in the bank the server was started with
    POST /v1/plan          {"row", "goal", ...} -> {"actions", "states", "cost", "costs"}
"""

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..extras.errors import DataError
from ..extras.logging import get_logger
from .batching import Engine, Job
from .errors import ApiError, error_body
from .schemas import (
    NearestRequest,
    PlanRequest,
    PredictNextRequest,
    RolloutRequest,
    decode_array,
    decode_row,
    decode_streams,
    listed,
    parse_body,
)

logger = get_logger("wmfactory.api")
OPEN_PATHS = ("/v1/health",)


@dataclass
class Limits:
    max_body_bytes: int = 16 * 2**20
    request_timeout: float = 60.0
    max_samples: int = 256


def create_app(model, engine: Engine, limits: Limits, api_key: Optional[str] = None, bank=None,
               model_id: str = "world-model") -> FastAPI:
    """The app; its lifespan starts the engine and stops it after the last request in flight."""
    gaps = model.config.missing_values == "mask"  # a row's vectors may hold missing entries (null)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        await asyncio.to_thread(engine.stop)

    app = FastAPI(title="wmfactory", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def refused(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(DataError)
    async def bad_data(request: Request, err: DataError):
        return JSONResponse(error_body(422, str(err), "invalid_data"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else err.detail
        return JSONResponse(error_body(err.status_code, message, "no_route" if err.status_code in (404, 405)
                                       else "http_error"), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception):
        logger.error(f"{request.method} {request.url.path} failed", exc_info=err)
        return JSONResponse(error_body(500, "internal error (the server log has the details)", "internal_error"),
                            status_code=500)

    async def run(job: Job, started: float) -> Any:
        """The engine's answer to `job`, within what is left of the request's time."""
        future = asyncio.wrap_future(engine.submit(job))
        try:
            return await asyncio.wait_for(future, limits.request_timeout - (time.monotonic() - started))
        except asyncio.TimeoutError:
            job.cancelled.set()  # the engine drops it at its next step
            raise ApiError(504, f"the request took longer than the server's limit of {limits.request_timeout:g} s",
                           "timeout") from None
        except DataError as err:
            raise ApiError(422, str(err), "invalid_data") from None

    def check_samples(num_samples: Optional[int]) -> None:
        if num_samples is not None and num_samples > limits.max_samples:
            raise ApiError(422, f"`num_samples` {num_samples} is more than this server allows ({limits.max_samples})",
                           "too_many_samples")

    @app.get("/v1/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(model, model_id, bank)]}

    @app.get("/v1/stats")
    async def stats():
        return engine.stats()

    @app.post("/v1/rollout")
    async def rollout(request: Request):
        started = time.monotonic()
        body: RolloutRequest = parse_body(await request.body(), RolloutRequest)
        check_samples(body.num_samples)
        row = decode_row(body.row, missing=gaps)
        conditions = {name: decode_array(values, f"conditions.{name}") for name, values in
                      (body.conditions or {}).items()} or None
        arguments = dict(steps=body.steps, context_groups=body.context_groups, num_samples=body.num_samples,
                         temperature=body.temperature, seed=body.seed, conditions=conditions, pattern=body.pattern,
                         from_last_vector=body.from_last_vector)
        cost = body.steps * (body.num_samples or 1)
        if body.stream:
            from .streaming import event_stream

            return await event_stream(engine, {"row": row, **arguments}, cost, started, limits.request_timeout)
        result = await run(Job(rollout={"row": row, **arguments}, cost=cost), started)
        return JSONResponse({"vectors": listed(result)})

    @app.post("/v1/predict_next")
    async def predict_next(request: Request):
        started = time.monotonic()
        body: PredictNextRequest = parse_body(await request.body(), PredictNextRequest)
        check_samples(body.num_samples)
        row = decode_row(body.row, missing=gaps)
        groups = await run(Job(call=lambda: model.predict_next(row, num_samples=body.num_samples,
                                                               temperature=body.temperature, seed=body.seed)),
                           started)
        return JSONResponse({"groups": [group_json(group) for group in groups]})

    @app.post("/v1/nearest")
    async def nearest(request: Request):
        body: NearestRequest = parse_body(await request.body(), NearestRequest)
        if bank is None:
            raise ApiError(400, "this server has no bank: start it with `--bank <output_dir of wmfactory encode>`",
                           "no_bank")
        vectors = decode_array(body.vectors, "vectors")
        if vectors.shape[-1] != bank.vectors.shape[1]:
            raise ApiError(422, f"`vectors` have dimension {vectors.shape[-1]}; the bank's is "
                                f"{bank.vectors.shape[1]}", "invalid_field")
        return JSONResponse({"neighbours": bank.neighbours(vectors.reshape(-1, vectors.shape[-1]), body.k)})

    @app.post("/v1/plan")
    async def plan(request: Request):
        started = time.monotonic()
        body: PlanRequest = parse_body(await request.body(), PlanRequest)
        check_samples(body.num_samples)
        arguments = dict(
            horizon=body.horizon, goal=decode_streams(body.goal, "goal", (1,)),
            weights=None if body.weights is None else decode_streams(body.weights, "weights", (1,)),
            action_stream=body.action_stream, low=_bound(body.low), high=_bound(body.high), method=body.method,
            candidates=body.candidates, iterations=body.iterations, elites=body.elites, seed=body.seed,
            warm_start=None if body.warm_start is None else decode_array(body.warm_start, "warm_start", (2,)),
            num_samples=body.num_samples, risk=body.risk, alpha=body.alpha, temperature=body.temperature,
            mppi_temperature=body.mppi_temperature, context_groups=body.context_groups,
            from_last_vector=body.from_last_vector, pattern=body.pattern,
            conditions={name: decode_array(values, f"conditions.{name}") for name, values in
                        (body.conditions or {}).items()} or None)
        row = decode_row(body.row, missing=gaps)
        cost = body.horizon * body.candidates * body.iterations * (body.num_samples or 1)
        result = await run(Job(call=lambda: model.plan(row, **arguments), cost=cost), started)
        answer = {"actions": listed(result.actions), "states": listed(result.states), "cost": float(result.cost),
                  "costs": listed(result.costs)}
        if getattr(result, "state_samples", None) is not None:
            answer["state_samples"] = listed(result.state_samples)
        return JSONResponse(answer)

    return app


class Guard:
    """ASGI middleware: the API key (every path but /v1/health), the body limit (the Content-Length header and the
    bytes actually received), and one log line per request: method, path, status, milliseconds."""

    def __init__(self, app, api_key: Optional[str], max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def logged_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await _send_error(logged_send, refusal)
                return
            received = [0]

            async def counted_receive():
                message = await receive()
                if message["type"] == "http.request":
                    received[0] += len(message.get("body", b""))
                    if received[0] > self.max_body_bytes:
                        raise self.too_large()
                return message

            await self.app(scope, counted_receive, logged_send)
        finally:
            milliseconds = 1000 * (time.perf_counter() - started)
            logger.info(f"{scope['method']} {scope['path']} {status[0]} {milliseconds:.1f} ms")

    def refusal(self, scope) -> Optional[ApiError]:
        headers = dict(scope["headers"])
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                return ApiError(401, "a valid API key is needed: send `Authorization: Bearer <key>`",
                                "invalid_api_key")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return self.too_large()
        return None

    def too_large(self) -> ApiError:
        return ApiError(413, f"the body is larger than the server's limit of {self.max_body_bytes} bytes "
                             "(send large arrays as base64, or start the server with a larger `max_body_mb`)",
                        "body_too_large")


async def _send_error(send, err: ApiError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def group_json(group) -> dict:
    out = {"group": group.group, "key": group.key, "occurrence": group.occurrence, "stream": group.stream,
           "predicted": listed(group.predicted), "target": listed(group.target)}
    if group.samples is not None:
        out["samples"] = listed(group.samples)
    return out


def model_card(model, model_id: str, bank) -> dict:
    config = model.config
    text = config.text_config.get_text_config()
    kinds = {name: config.stream_kind(name) for name in config.stream_dims}
    streams = {name: {"kind": "predicted" if kinds[name].predicted else kinds[name].name, "dim": d}
               for name, d in config.stream_dims.items()}
    card = {"id": model_id, "object": "model", "owned_by": "wmfactory", "streams": streams,
            "head": config.prediction_head_type, "predict_residual": config.predict_residual,
            "context_length": getattr(text, "max_position_embeddings", None),
            "normalisation": config.embedding_norm, "template": config.template,
            "base_model": config.base_model_name_or_path, "trained_with": config.wmfactory_version,
            "wmfactory_version": __version__}
    card["bank"] = None if bank is None else {"items": len(bank.items), "dim": int(bank.vectors.shape[1])}
    return card


def _bound(value):
    if isinstance(value, list):
        return decode_array(value, "low/high", (1,))
    return value
