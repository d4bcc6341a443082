"""`"stream": true` on a rollout: each predicted vector is sent as a server-sent event (sse-starlette) as soon as
the engine has made it. Events: `vector` `{"step", "stream", "vector"}` per step, then `done` `{"steps"}`; a
failure after the first event is an `error` event with the usual error body. A problem found before the first
vector (a bad row, too many steps) is an ordinary error response with its 4xx status. When the client goes away the
engine stops the rollout at its next step."""

import asyncio
import concurrent.futures
import json
import time
from sse_starlette.sse import EventSourceResponse

from ..extras.errors import DataError
from .batching import Engine, Job
from .errors import ApiError, error_body
from .schemas import listed

async def event_stream(engine: Engine, rollout: dict, cost: float, started: float,
                       timeout: float) -> EventSourceResponse:
    """`rollout`: the arguments of `prepare_rollout`, the row included."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = Job(rollout=rollout, cost=cost)
    made = [0]

    def put(kind: str, data: dict) -> None:  # from the engine's worker thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, data))
        except RuntimeError:  # the event loop is gone (the server stopped)
            job.cancelled.set()

    def on_vector(name: str, vector) -> None:
        made[0] += 1
        put("vector", {"step": made[0], "stream": name, "vector": listed(vector)})

    def finished(future: concurrent.futures.Future) -> None:
        if future.cancelled() or isinstance(future.exception(), concurrent.futures.CancelledError):
            return
        err = future.exception()
        if err is None:
            put("done", {"steps": made[0]})
        elif isinstance(err, DataError):
            put("error", error_body(422, str(err), "invalid_data"))
        else:
            put("error", error_body(500, "internal error (the server log has the details)", "internal_error"))

    job.on_vector = on_vector
    job.future.add_done_callback(finished)
    engine.submit(job)
    first = await _next_event(events, job, started, timeout)
    if first[0] == "error":
        job.cancelled.set()
        error = first[1]["error"]
        raise ApiError(422 if error["code"] == "invalid_data" else 500, error["message"], error["code"])

    async def generate():
        kind, data = first
        try:
            while True:
                yield {"event": kind, "data": json.dumps(data)}
                if kind != "vector":
                    return
                try:
                    kind, data = await _next_event(events, job, started, timeout)
                except ApiError as err:
                    yield {"event": "error", "data": json.dumps(err.body())}
                    return
        finally:  # done, failed, or the client disconnected: the engine stops at its next step
            job.cancelled.set()

    return EventSourceResponse(generate())


async def _next_event(events: asyncio.Queue, job: Job, started: float, timeout: float) -> tuple[str, dict]:
    try:
        return await asyncio.wait_for(events.get(), timeout - (time.monotonic() - started))
    except asyncio.TimeoutError:
        job.cancelled.set()
        raise ApiError(504, f"the request took longer than the server's limit of {timeout:g} s", "timeout") from None
