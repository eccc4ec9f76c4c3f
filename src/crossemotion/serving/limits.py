"""What every prediction runs under, for the HTTP API and the Gradio UI alike.

Both call the same ``Runner`` (one per application, shared when the UI is
mounted in the API), so the concurrency cap and the request timeout are one
piece of code; the pixel, clip-length and text limits live in ``Service``,
which both call too. Image predictions run in the service's micro-batches
(``serving.batching``): ``Runner.wait`` puts the request timeout on their
answer, and a request that times out while queued is dropped from its batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

import anyio

from crossemotion.serving.settings import Settings

T = TypeVar("T")


class PredictionTimeout(RuntimeError):
    """A prediction ran past ``request_timeout`` (HTTP 504)."""


class Runner:
    """Runs a blocking prediction in a worker thread, at most ``max_concurrency`` at
    once (more wait their turn), each under ``request_timeout``.

    A prediction past the timeout is abandoned, not stopped (Python cannot kill
    a thread): its answer is dropped and its slot frees when it ends.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # created lazily: it needs the running event loop
            self._limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
        work = anyio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True,
                                        limiter=self._limiter)  # fmt: skip
        return await self._within(work)

    async def wait(self, future: Future[T]) -> T:
        """The answer of work queued elsewhere (a micro-batch), under ``request_timeout``;
        past it the future is cancelled, so a batch not yet started leaves it out."""
        return await self._within(asyncio.wrap_future(future))

    async def _within(self, work: Awaitable[T]) -> T:
        timeout = self.settings.request_timeout
        late = PredictionTimeout(f"prediction did not finish within {timeout:g}s")
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(work, timeout=timeout)
        except TimeoutError:
            raise late from None
        # wait_for hands back an answer that was ready when its timer fired, which
        # on a busy event loop can be long after the deadline: the limit is when
        # the answer is seen, so a late answer is a timeout whichever came first
        if time.monotonic() - start > timeout:
            raise late
        return result
