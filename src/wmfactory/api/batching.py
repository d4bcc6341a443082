"""The inference engine behind the server: one worker thread owns the model, and requests reach it through a
bounded queue. Each cycle the worker takes the first waiting request, waits `window` seconds for others (up to
`max_batch_size`), and runs the rollouts that share their arguments as one `WorldModel.rollout` over the list of
their rows (one batch, one KV cache; each row's result equals its rollout alone). Rollouts with other arguments,
and every other kind of request, run as separate calls in the same cycle, the cheapest first, so a long rollout
does not hold shorter ones of its cycle."""

import collections
import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..extras.errors import DataError
from ..extras.logging import get_logger
from .errors import ApiError

logger = get_logger(__name__)
_STOP = object()


@dataclass
class Job:
    """One request for the worker. A rollout (`rows` set) is batched with those of the same `key`; a `call` runs
    alone, in the worker thread (the model is only ever used there)."""

    key: tuple = ()
    row: Optional[dict] = None
    arguments: dict = field(default_factory=dict)
    call: Optional[Callable[[], Any]] = None
    cost: float = 1.0  # to order the calls of a cycle, cheapest first
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)  # a stream whose client went away


class Engine:
    def __init__(self, model, window: float = 0.005, max_batch_size: int = 64, max_queue: int = 256):
        self.model, self.window, self.max_batch_size = model, window, max_batch_size
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batch_sizes: collections.Counter = collections.Counter()  # rollout calls, by the rows in each
        self.calls = 0
        self.streams_stopped = 0  # streamed rollouts stopped before their last step (the client went away)
        self.busy_seconds = 0.0  # time spent running the model, for a Retry-After estimate
        self.thread = threading.Thread(target=self._work, name="wmfactory-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        self.queue.put(_STOP)
        self.thread.join()

    def submit(self, job: Job) -> concurrent.futures.Future:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"the server is busy ({self.queue.maxsize} requests waiting): retry later",
                           "queue_full", {"Retry-After": str(self.retry_after())}) from None
        return job.future

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: its length times the mean time of a call, at least 1."""
        mean = self.busy_seconds / self.calls if self.calls else 0.1
        return max(1, round(self.queue.qsize() * mean / max(self.max_batch_size, 1)))

    def stats(self) -> dict:
        return {"queued": self.queue.qsize(), "calls": self.calls, "streams_stopped": self.streams_stopped,
                "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())}}

    # ---- the worker -------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is _STOP:
                break
            jobs = [first]
            deadline = time.monotonic() + self.window
            while len(jobs) < self.max_batch_size:
                try:
                    job = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                jobs.append(job)
            self._cycle(jobs)

    def _cycle(self, jobs: list[Job]) -> None:
        live = [job for job in jobs if not job.cancelled.is_set() and job.future.set_running_or_notify_cancel()]
        groups: dict[tuple, list[Job]] = {}
        calls = []
        for job in live:
            if job.call is not None:
                calls.append((job.cost, [job]))
            else:
                groups.setdefault(job.key, []).append(job)
        calls += [(sum(job.cost for job in group), group) for group in groups.values()]
        for _, group in sorted(calls, key=lambda item: item[0]):
            started = time.perf_counter()
            if group[0].call is not None:
                _settle(group[0], group[0].call)
            else:
                self._rollout(group)
            self.busy_seconds += time.perf_counter() - started
            self.calls += 1

    def _rollout(self, group: list[Job]) -> None:
        self.batch_sizes[len(group)] += 1
        if len(group) == 1:
            _settle(group[0], lambda: self.model.rollout(group[0].row, **group[0].arguments))
            return
        try:
            results = self.model.rollout([job.row for job in group], **group[0].arguments)
        except DataError:  # one bad row: run each alone, so that the error goes to its own request only
            for job in group:
                _settle(job, lambda job=job: self.model.rollout(job.row, **job.arguments))
            return
        except Exception as err:  # a bug: every request of the batch gets the 500
            logger.exception("rollout batch failed")
            for job in group:
                job.future.set_exception(err)
            return
        for job, result in zip(group, results):
            job.future.set_result(result)


def _settle(job: Job, function: Callable[[], Any]) -> None:
    try:
        job.future.set_result(function())
    except DataError as err:
        job.future.set_exception(err)
    except Exception as err:
        logger.exception("request failed in the engine")
        job.future.set_exception(err)
