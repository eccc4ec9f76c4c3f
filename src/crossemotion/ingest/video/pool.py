"""A bounded pool of worker processes whose calls have a hard deadline.

Video decoding runs in FFmpeg's C code, which a Python thread cannot stop:
a timeout that only stops *waiting* leaves the work running (and, in a
server, piling up). Here each call goes to a worker process; a call past its
deadline gets its worker killed (SIGKILL) and a fresh one started in its
place, so the work really stops and the pool keeps its size.

Workers are plain ``python -m crossemotion.ingest.video.pool`` processes talking over
a socket pair (not ``multiprocessing``'s fork or spawn: forking a server with
torch threads is unsafe, and spawn re-imports the caller's ``__main__``,
which for a Snakemake script is the script itself). A worker imports the
``preload`` modules once, optionally caps its address space (``memory_mb``,
so an allocation bomb fails inside the worker instead of swapping the
machine), ignores SIGINT (the parent decides when the pool stops) and exits
when its socket closes, so none outlives the pool's process.

Calls are thread-safe: up to ``size`` run at once, one per worker; a caller
waits up to ``wait`` seconds for a free worker (``PoolBusy`` after that).
"""

from __future__ import annotations

import importlib
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
MB = 1024 * 1024


class PoolError(RuntimeError):
    """A call the pool could not complete."""


class PoolBusy(PoolError):
    """No worker became free in time."""


class WorkerTimeout(PoolError, TimeoutError):
    """The call passed its deadline; its worker was killed and replaced."""


class WorkerCrashed(PoolError):
    """The worker died during the call (e.g. killed by the kernel); it was replaced."""


class _Worker:
    def __init__(self, memory_mb: int | None, preload: tuple[str, ...]) -> None:
        ours, theirs = socket.socketpair()
        args = [sys.executable, "-m", "crossemotion.ingest.video.pool", str(theirs.fileno()),
                str(memory_mb or 0), *preload]  # fmt: skip
        try:
            self.proc = subprocess.Popen(args, pass_fds=(theirs.fileno(),),
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def stop(self, grace: float = 5.0) -> None:
        """Close the socket (the worker exits on EOF); kill it if it lingers."""
        self.conn.close()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerPool:
    def __init__(self, size: int, *, memory_mb: int | None = None,
                 preload: Iterable[str] = ()) -> None:  # fmt: skip
        if size < 1:
            raise ValueError(f"pool size must be positive, got {size}")
        self.size = size
        self.memory_mb = memory_mb
        self.preload = tuple(preload)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._busy: set[_Worker] = set()
        self._closed = False
        self.replaced = 0  # workers killed at a deadline or found dead
        for _ in range(size):
            self._idle.put(self._start())

    def _start(self) -> _Worker:
        return _Worker(self.memory_mb, self.preload)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        """The live workers' process ids (idle and busy)."""
        with self._lock:
            workers = list(self._idle.queue) + list(self._busy)
        return [w.proc.pid for w in workers]

    def call(self, fn: Callable[..., R], *args: Any, timeout: float,
             wait: float | None = None) -> R:  # fmt: skip
        """``fn(*args)`` in a worker: its result, or its exception re-raised here.

        ``fn`` must be a module-level function (it is sent by name). Past
        ``timeout`` seconds the worker is killed and replaced (``WorkerTimeout``).
        """
        if self._closed:
            raise PoolError("the worker pool is closed")
        try:
            worker = self._idle.get(timeout=timeout if wait is None else wait)
        except queue.Empty:
            raise PoolBusy(f"all {self.size} workers stayed busy") from None
        with self._lock:
            self._busy.add(worker)
        healthy = False
        try:
            try:
                worker.conn.send((fn, args))
                if not worker.conn.poll(max(0.0, timeout)):
                    raise WorkerTimeout(f"did not finish within {timeout:g}s")
                kind, payload = worker.conn.recv()
            except WorkerTimeout:
                raise
            except (EOFError, OSError) as err:
                try:
                    code = worker.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    code = None
                if code is None:
                    how = type(err).__name__
                else:
                    how = f"exit status {code}" if code >= 0 else f"signal {-code}"
                raise WorkerCrashed(f"the worker process died ({how})") from None
            healthy = True
        finally:
            self._release(worker, healthy)
        if kind == "error":
            raise payload
        return payload  # type: ignore[no-any-return]

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            closed = self._closed
        if healthy and not closed:
            self._idle.put(worker)
            return
        if healthy:
            worker.stop()
            return
        worker.kill()
        self.replaced += 1
        if not closed:
            self._idle.put(self._start())

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, timeout: float,
            on_error: Callable[[T, BaseException], R]) -> list[R]:  # fmt: skip
        """``fn(item)`` for each item, ``size`` at a time, in order; a call that fails
        (its exception, a timeout, a crash) gives ``on_error(item, exc)`` instead."""

        def one(item: T) -> R:
            try:
                return self.call(fn, item, timeout=timeout, wait=None)
            except Exception as exc:
                return on_error(item, exc)

        items = list(items)
        if len(items) <= 1 or self.size == 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.size) as threads:
            return list(threads.map(one, items))

    def close(self) -> None:
        """Stop the idle workers now; busy ones stop when their call ends."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                break


def _serve(fd: int, memory_mb: int, preload: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mb > 0:
        limit = memory_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for name in preload:
        importlib.import_module(name)
    conn = Connection(fd)
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        except Exception as exc:  # a function that does not unpickle here
            conn.send(("error", PoolError(f"cannot load the call: {type(exc).__name__}: {exc}")))
            continue
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except Exception as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception
            conn.send(("error", PoolError(f"{type(exc).__name__}: {exc}")))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
