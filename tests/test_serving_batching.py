"""serving.batching.MicroBatcher: requests that wait together share one batch."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from crossemotion.serving.batching import BatcherClosed, MicroBatcher


class Gate:
    """A ``work`` whose first batch waits until released, so a test can queue items
    behind it and know they will be taken together."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[int]] = []

    def __call__(self, state: object, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


def test_items_waiting_together_form_one_batch_with_their_own_answers() -> None:
    gate = Gate()
    batcher = MicroBatcher(gate, max_batch=4, max_wait=0.0, workers=1)
    try:
        first = batcher.submit(1)
        assert gate.started.wait(10)
        # six items queue while the first batch runs: taken as 4 + 2 (max_batch)
        waiting = [batcher.submit(i) for i in (2, -3, 4, 5, 6, 7)]
        gate.release.set()
        assert first.result(10) == 10
        answers = []
        for fut in waiting:
            try:
                answers.append(fut.result(10))
            except ValueError as exc:  # one bad item fails alone
                answers.append(str(exc))
    finally:
        batcher.close()
    assert answers == [20, "bad -3", 40, 50, 60, 70]
    assert gate.batches == [[1], [2, -3, 4, 5], [6, 7]]
    assert batcher.batches == 3 and batcher.items == 7


def test_a_request_cancelled_while_queued_is_left_out() -> None:
    gate = Gate()
    batcher = MicroBatcher(gate, max_batch=8, max_wait=0.0, workers=1)
    try:
        batcher.submit(1)
        assert gate.started.wait(10)
        gone, kept = batcher.submit(2), batcher.submit(3)
        assert gone.cancel()  # what Runner.wait does when the request times out
        gate.release.set()
        assert kept.result(10) == 30
    finally:
        batcher.close()
    with pytest.raises(CancelledError):
        gone.result(0)
    assert gate.batches == [[1], [3]]


def test_a_failing_batch_fails_each_of_its_items() -> None:
    def broken(state: object, items: list[int]) -> list[int]:
        raise RuntimeError("model crashed")

    batcher = MicroBatcher(broken, workers=2)
    try:
        futures = [batcher.submit(i) for i in range(3)]
        for fut in futures:
            with pytest.raises(RuntimeError, match="model crashed"):
                fut.result(10)
    finally:
        batcher.close()


def test_busy_names_the_running_batch_and_where_it_is() -> None:
    """What the server logs after a 504: the stuck batch's size, age and stack."""
    gate = Gate()
    batcher = MicroBatcher(gate, max_batch=4, max_wait=0.0, workers=2, name="img")
    try:
        assert batcher.busy() == [] and batcher.waiting == 0
        first = batcher.submit(1)
        assert gate.started.wait(10)
        (line,) = batcher.busy()
        assert line.startswith("img-") and "batch of 1 running for" in line
        # the worker's innermost frame is the gate's wait, inside Gate.__call__
        assert "in __call__" in line and "self.release.wait" in line
        assert "at:" not in batcher.busy(stack=False)[0]
        gate.release.set()
        assert first.result(10) == 10
    finally:
        batcher.close()
    assert batcher.busy() == []


# the worker thread ends with the exit, as it should: pytest reports that as a warning
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_exit_inside_a_batch_still_answers_its_items() -> None:
    """A BaseException ends the worker thread, but its items get it as their error
    instead of waiting forever."""

    def leaving(state: object, items: list[int]) -> list[int]:
        raise SystemExit("interpreter exit")

    batcher = MicroBatcher(leaving, workers=1)
    try:
        with pytest.raises(SystemExit, match="interpreter exit"):
            batcher.submit(1).result(10)
    finally:
        batcher.close()


def test_each_worker_builds_its_state_once_in_its_own_thread() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> str:
        with lock:
            made.append(threading.current_thread().name)
        return threading.current_thread().name

    batcher = MicroBatcher(lambda state, items: [state] * len(items), workers=3, make_state=make,
                           name="w")  # fmt: skip
    try:
        names = {batcher.submit(i).result(10) for i in range(20)}
    finally:
        batcher.close()
    assert sorted(made) == ["w-0", "w-1", "w-2"]
    assert names <= set(made)


def test_a_state_that_cannot_be_built_stops_the_start_and_close_refuses_work() -> None:
    def no_detector() -> None:
        raise ValueError("unknown face detector 'nope'; available: haar, retinaface")

    with pytest.raises(ValueError, match="available: haar"):
        MicroBatcher(lambda state, items: items, workers=2, make_state=no_detector)
    batcher = MicroBatcher(lambda state, items: items)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit(1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        MicroBatcher(lambda state, items: items, max_batch=0)
