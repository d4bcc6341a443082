"""The inference engine behind the server: one worker thread owns the model; requests reach it through a bounded
queue. Rollouts are stepped in cohorts (`stepping.Cohort`): the rollouts that arrive within `window` seconds of the
first (and ask for the same number of trajectories) form one batch with one KV cache, whatever their steps, seeds or
conditions; each gets its result at its own last step. While cohorts run, the worker advances each by one position
in turn and admits the next cohort between two steps, so a long rollout does not hold requests that arrive after
it. Other requests (`predict_next`, `plan`) run whole between two steps, the cheapest first. At most
`max_batch_size` rows are in flight; beyond that requests wait in the queue, and a full queue is a 429."""

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
from .stepping import Cohort, prepare_rollout

logger = get_logger(__name__)
_STOP = object()
# cohorts stepped in turn at most: each costs its own decoder pass per step, so later arrivals wait for a cohort to
# finish rather than splitting into many small ones
MAX_COHORTS = 2


@dataclass
class Job:
    """One request for the worker: a rollout (`rollout`: the arguments of `prepare_rollout`, the row included;
    `on_vector(stream, vector)` for each vector when it is streamed) or a `call` run as it is, in the worker thread
    (the model is only ever used there). The future gets the result or the `DataError`."""

    rollout: Optional[dict] = None
    call: Optional[Callable[[], Any]] = None
    on_vector: Optional[Callable[[str, Any], None]] = None
    cost: float = 1.0  # to order the calls between two steps, cheapest first
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)  # timed out, or its client went away


class Engine:
    def __init__(self, model, window: float = 0.005, max_batch_size: int = 64, max_queue: int = 256):
        self.model, self.window, self.max_batch_size = model, window, max_batch_size
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batch_sizes: collections.Counter = collections.Counter()  # cohorts formed, by their rows
        self.calls = 0
        self.stopped_early = 0  # rollouts dropped before their last step (timed out, or the client went away)
        self.step_seconds = 0.0  # time spent stepping and calling, for a Retry-After estimate
        self.thread = threading.Thread(target=self._work, name="wmfactory-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Finish what is queued or running, then end the worker."""
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
        """Seconds until the queue has likely drained, at least 1: the time spent per finished request so far
        times the requests waiting."""
        finished = sum(size * count for size, count in self.batch_sizes.items()) + self.calls
        per_request = self.step_seconds / finished if finished else 0.1
        return max(1, round(self.queue.qsize() * per_request))

    def stats(self) -> dict:
        return {"queued": self.queue.qsize(), "calls": self.calls, "stopped_early": self.stopped_early,
                "busy_s": round(self.step_seconds, 3),
                "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())}}

    # ---- the worker -------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        cohorts: list[tuple[Cohort, list[Job]]] = []
        pending: list[Job] = []
        first_seen = 0.0
        stopping = False
        while True:
            if not cohorts and not pending:
                if stopping:
                    return
                job = self.queue.get()  # idle: wait for work
                if job is _STOP:
                    return
                pending, first_seen = [job], time.monotonic()
            # everything queued now, as far as there is room; with nothing running, wait out the window
            room = self.max_batch_size - sum(len(jobs) for _, jobs in cohorts)
            wait_until = first_seen + self.window if not cohorts else 0.0
            while len(pending) < room:
                try:
                    job = self.queue.get(timeout=max(wait_until - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                if not pending:
                    first_seen = time.monotonic()
                pending.append(job)
            if pending and (not cohorts or (len(cohorts) < MAX_COHORTS and time.monotonic() - first_seen >= self.window)
                            or stopping):
                cohorts += self._admit(pending)
                pending = []
            started = time.perf_counter()
            for cohort, jobs in cohorts:
                try:
                    cohort.step()
                except Exception as err:  # a bug: every request of the cohort gets the 500
                    logger.exception("a rollout step failed")
                    for i, job in enumerate(jobs):
                        if cohort.live[i]:
                            job.future.set_exception(err)
                    cohort.live = [False] * len(jobs)
            self.step_seconds += time.perf_counter() - started
            cohorts = [(cohort, jobs) for cohort, jobs in cohorts if not cohort.done]

    def _admit(self, jobs: list[Job]) -> list[tuple[Cohort, list[Job]]]:
        """Run the calls (cheapest first); prepare the rollouts and group them into cohorts by trajectory count."""
        live = [job for job in jobs if not job.cancelled.is_set() and job.future.set_running_or_notify_cancel()]
        for job in sorted((job for job in live if job.call is not None), key=lambda job: job.cost):
            started = time.perf_counter()
            _settle(job, job.call)
            self.step_seconds += time.perf_counter() - started
            self.calls += 1
        groups: dict[int, list[tuple[Job, Any]]] = {}
        for job in live:
            if job.call is None:
                try:
                    continuation = prepare_rollout(self.model, **job.rollout)
                except DataError as err:
                    job.future.set_exception(err)
                    continue
                except Exception as err:
                    logger.exception("a rollout could not be prepared")
                    job.future.set_exception(err)
                    continue
                groups.setdefault(continuation.count, []).append((job, continuation))
        cohorts = []
        for members in groups.values():
            jobs = [job for job, _ in members]
            try:
                cohort = Cohort(self.model, [continuation for _, continuation in members],
                                on_vector=lambda i, name, vector, jobs=jobs: jobs[i].on_vector and
                                jobs[i].on_vector(name, vector),
                                on_done=lambda i, result, jobs=jobs: jobs[i].future.set_result(result),
                                on_error=lambda i, err, jobs=jobs: jobs[i].future.set_exception(err),
                                stopped=lambda i, jobs=jobs: self._stopped(jobs[i]))
            except Exception as err:
                logger.exception("a rollout batch could not be started")
                for job in jobs:
                    job.future.set_exception(err)
                continue
            self.batch_sizes[len(jobs)] += 1
            cohorts.append((cohort, jobs))
        return cohorts

    def _stopped(self, job: Job) -> bool:
        if job.cancelled.is_set():
            self.stopped_early += 1
            if not job.future.done():
                job.future.set_exception(concurrent.futures.CancelledError())
            return True
        return False


def _settle(job: Job, function: Callable[[], Any]) -> None:
    try:
        job.future.set_result(function())
    except DataError as err:
        job.future.set_exception(err)
    except Exception as err:
        logger.exception("a request failed in the engine")
        job.future.set_exception(err)
