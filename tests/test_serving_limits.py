"""The request timeout of serving's Runner, without a server: the HTTP checks are
in test_serving.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from crossemotion.serving.limits import PredictionTimeout, Runner
from crossemotion.serving.settings import Settings


def test_an_answer_seen_after_the_deadline_is_a_timeout() -> None:
    """A busy event loop can see a fast prediction's answer and its expired timer
    in one go: the answer came late all the same, so the request is a 504."""
    runner = Runner(Settings(request_timeout=0.05))

    def predict() -> str:
        time.sleep(0.02)
        return "done"

    async def busy_loop() -> str:
        call = asyncio.ensure_future(runner(predict))
        await asyncio.sleep(0.005)  # the call starts its worker thread and its timer
        # the loop is blocked past the deadline; the worker ends before it
        time.sleep(0.3)
        return await call

    with pytest.raises(PredictionTimeout, match=r"did not finish within 0\.05s"):
        asyncio.run(busy_loop())


def test_an_answer_within_the_deadline_is_returned() -> None:
    runner = Runner(Settings(request_timeout=30.0))
    assert asyncio.run(runner(lambda x: x + 1, 41)) == 42


def test_a_prediction_past_the_deadline_is_abandoned() -> None:
    runner = Runner(Settings(request_timeout=0.05))
    with pytest.raises(PredictionTimeout):
        asyncio.run(runner(time.sleep, 1.0))
