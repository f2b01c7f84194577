"""One inference worker for the whole service: a bounded queue in front of it, batches out of it.

Every request that needs the model (decoding its upload included) becomes a
job on one queue, and one thread takes the jobs off in order. Concurrent
clients therefore never run the network side by side, each with every core
(on a small CPU that is many times slower than taking turns; see DESIGN.md),
and jobs of the same kind that wait together run as one batch: the waiting
is what fills the batch, no timer holds a lone request back.

- `submit(kind, payload)` returns a `concurrent.futures.Future` at once, or
  raises `QueueFull` when `max_queue` jobs already wait (the service answers
  503; memory stays bounded however many clients come).
- The worker takes the oldest job and the jobs of the same kind queued right
  behind it, up to `max_batch`, and calls that kind's handler with their
  payloads. A handler returns one result per payload, in order; a result
  that is an exception fails only its own job. A handler that raises fails
  the whole batch, and the worker carries on with the next one.
- A job whose future was cancelled before the worker reached it (its client
  gave up, or the service's timeout cancelled it) is skipped.

`stats()` counts what happened (jobs, batches, largest batch, rejections),
for `/health`, the tests and the benchmark.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

__all__ = ["InferenceQueue", "QueueFull"]

Handler = Callable[[Sequence[object]], Sequence[object]]


class QueueFull(RuntimeError):
    """`max_queue` jobs already wait; try again later."""


@dataclass
class _Job:
    kind: str
    payload: object
    future: Future


class InferenceQueue:
    """A bounded job queue drained by one worker thread in batches of jobs of one kind.

    `handlers` maps a job kind ("predict", "heatmap") to a function from a
    list of payloads to a list of results (or exceptions), one per payload.
    """

    def __init__(self, handlers: Mapping[str, Handler], max_batch: int = 8, max_queue: int = 32,
                 name: str = "heron-inference") -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be 1 or more, got {max_batch} and {max_queue}")
        self.handlers: dict[str, Handler] = dict(handlers)
        self.max_batch, self.max_queue, self.name = max_batch, max_queue, name
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._counts: Counter = Counter()
        self._sizes: Counter = Counter()

    # ---- lifetime
    def start(self) -> "InferenceQueue":
        """Start the worker thread (once); returns self."""
        with self._ready:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Finish the batch in hand, cancel the jobs still waiting, and end the worker."""
        with self._ready:
            self._stopping = True
            left = list(self._jobs)
            self._jobs.clear()
            self._ready.notify_all()
        for job in left:
            job.future.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the clients' side
    def submit(self, kind: str, payload: object) -> Future:
        """Queue one job; its future gets the handler's result (or exception).

        Raises `QueueFull` when `max_queue` jobs wait, `KeyError` for a kind
        without a handler, `RuntimeError` once the queue is stopped.
        """
        if kind not in self.handlers:
            raise KeyError(f"no handler for jobs of kind {kind!r}; known: {', '.join(self.handlers)}")
        job = _Job(kind, payload, Future())
        with self._ready:
            if self._stopping:
                raise RuntimeError("the inference queue is stopped")
            if len(self._jobs) >= self.max_queue:
                self._counts["rejected"] += 1
                raise QueueFull(f"{len(self._jobs)} requests are already waiting")
            self._jobs.append(job)
            self._counts["submitted"] += 1
            self._ready.notify()
        return job.future

    def check_room(self) -> None:
        """Raise `QueueFull` (counted as a rejection) when a job submitted now would be refused:
        lets a caller refuse a request before it reads the request's upload."""
        with self._ready:
            if len(self._jobs) >= self.max_queue:
                self._counts["rejected"] += 1
                raise QueueFull(f"{len(self._jobs)} requests are already waiting")

    def pending(self) -> int:
        """Jobs waiting for the worker (not counting the batch it is running)."""
        with self._ready:
            return len(self._jobs)

    def stats(self) -> dict:
        """Counts so far: submitted, completed, failed, cancelled, rejected, batches, largest_batch,
        pending, and batch_sizes ({size: batches of that size})."""
        with self._ready:
            counts = {key: self._counts[key] for key in
                      ("submitted", "completed", "failed", "cancelled", "rejected", "batches")}
            counts.update(largest_batch=max(self._sizes, default=0), pending=len(self._jobs),
                          batch_sizes={size: n for size, n in sorted(self._sizes.items())})
        return counts

    # ---- the worker's side
    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        """Wait for a job; take it and the jobs of its kind right behind it, live ones only."""
        with self._ready:
            while True:
                while not self._jobs and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return None
                kind, batch = self._jobs[0].kind, []
                while self._jobs and self._jobs[0].kind == kind and len(batch) < self.max_batch:
                    job = self._jobs.popleft()
                    if job.future.set_running_or_notify_cancel():
                        batch.append(job)
                    else:
                        self._counts["cancelled"] += 1
                if batch:
                    self._counts["batches"] += 1
                    self._sizes[len(batch)] += 1
                    return batch

    def _run(self, batch: list[_Job]) -> None:
        """Call the kind's handler once for the batch and hand each job its result."""
        try:
            results = list(self.handlers[batch[0].kind]([job.payload for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"handler gave {len(results)} results for {len(batch)} jobs")
        except Exception as exc:  # noqa: BLE001 - the worker outlives a failing batch
            results = [exc] * len(batch)
        failed = sum(isinstance(result, BaseException) for result in results)
        with self._ready:  # counted before the clients hear back, so a client reading stats() sees its job
            self._counts["completed"] += len(batch) - failed
            self._counts["failed"] += failed
        for job, result in zip(batch, results):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
