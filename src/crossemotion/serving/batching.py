"""Micro-batching: requests that arrive together are worked on together.

Inference servers (Triton's dynamic batcher, TorchServe's batch_size /
max_batch_delay) gather the requests that wait at one moment into one batch:
one model call per batch instead of one per request, and fewer thread hand-offs
per request. ``MicroBatcher`` does that for any ``work(items) -> results``:
``submit(item)`` queues an item and returns a ``concurrent.futures.Future``;
``workers`` threads each take what is waiting (up to ``max_batch``, waiting at
most ``max_wait`` seconds for more after the first), run ``work`` on the batch
and settle every item's future with its own result or its own exception. An item
whose future was cancelled before its batch started (a request past its
timeout) is left out of the batch, so an abandoned request costs nothing.

Each worker calls ``make_state()`` once in its own thread and passes the state to
every ``work`` call: per-thread resources (a face detector) are built there.

``busy()`` tells what each worker is doing now (its batch's size and age, and
where in the code it is): the server logs it when a request times out, so a
stalled batch shows its stack in the log instead of only a 504.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741  (item)
R = TypeVar("R")  # result

_STOP = object()


class BatcherClosed(RuntimeError):
    """``submit`` after ``close``."""


class MicroBatcher(Generic[I, R]):
    def __init__(
        self,
        work: Callable[[Any, list[I]], Sequence[R | BaseException]],
        *,
        max_batch: int = 8,
        max_wait: float = 0.002,
        workers: int = 1,
        make_state: Callable[[], Any] = lambda: None,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1 or workers < 1 or max_wait < 0:
            raise ValueError("max_batch and workers must be positive, max_wait not negative")
        self.work = work
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.make_state = make_state
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        # batch sizes served, for the server log and the bench
        self.batches = 0
        self.items = 0
        self._count_lock = threading.Lock()
        # thread name -> (thread ident, batch size, start time) while a batch runs
        self._running: dict[str, tuple[int, int, float]] = {}
        self._ready = threading.Barrier(workers + 1)
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()
        # every worker has built its state (or failed to): a detector that cannot load
        # is the server's start-up error, not every request's
        self._ready.wait()
        if self._errors:
            self.close()
            raise self._errors[0]

    def submit(self, item: I) -> Future[R]:
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        fut: Future[R] = Future()
        self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        """Stop the workers after the items already queued."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=30)

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def busy(self, stack: bool = True) -> list[str]:
        """One line per worker in a batch now: its size and age (and, with ``stack``,
        the worker's innermost frames), oldest first; idle workers are not listed."""
        now = time.monotonic()
        frames = sys._current_frames() if stack else {}
        lines = []
        for name, (ident, size, start) in sorted(self._running.copy().items(),
                                                 key=lambda kv: kv[1][2]):  # fmt: skip
            line = f"{name}: batch of {size} running for {now - start:.1f}s"
            frame = frames.get(ident)
            if frame is not None:
                where = traceback.format_stack(frame, limit=6)
                line += ", at:\n" + "".join(where).rstrip()
            lines.append(line)
        return lines

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken by a worker."""
        return self._queue.qsize()

    def _take(self) -> list[tuple[I, Future[R]]] | None:
        """The next batch: the first item (blocking), then whatever arrives within
        ``max_wait``, up to ``max_batch``; None when told to stop."""
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                left = deadline - time.monotonic()
                nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                self._queue.put(_STOP)  # for this worker's next turn
                break
            batch.append(nxt)
        return batch

    def _run(self) -> None:
        try:
            state = self.make_state()
        except Exception as exc:
            self._errors.append(exc)
            self._ready.wait()
            return
        self._ready.wait()
        me = threading.current_thread()
        while True:
            batch = self._take()
            if batch is None:
                return
            # a cancelled future (its request timed out while queued) is dropped here
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            with self._count_lock:
                self.batches += 1
                self.items += len(live)
            self._running[me.name] = (me.ident or 0, len(live), time.monotonic())
            try:
                results = list(self.work(state, [item for item, _ in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"batch of {len(live)} gave {len(results)} results")
            except Exception as exc:  # the batch failed as a whole: every item says so
                log.exception("batch of %d failed", len(live))
                results = [exc] * len(live)
            except BaseException as exc:
                # the thread ends (an interpreter exit): its items must not wait forever
                for _, fut in live:
                    fut.set_exception(exc)
                raise
            finally:
                self._running.pop(me.name, None)
            for (_, fut), result in zip(live, results, strict=True):
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
