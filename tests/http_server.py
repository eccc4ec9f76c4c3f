"""A real HTTP server on 127.0.0.1 for tests, with Range support and scripted faults.

Use the ``http_server`` fixture (``pytest_plugins = ["tests.http_server"]``) or
wrap ``serve()`` in a module's own fixture, and script routes::

    url = http_server.add("/a.bin", payload)                        # plain file
    http_server.add("/b.bin", payload, cut_after=1000, cut_times=1) # 1st GET dies at byte 1000
    http_server.add("/c.bin", payload, honour_range=False)          # always 200, full body
    http_server.add("/d.bin", payload, fail=[503, 503])             # two 503s, then the file
    http_server.add("/api/records/1", {"files": [...]})             # a dict is served as JSON
    http_server.base                                                # http://127.0.0.1:PORT
    http_server.state.requests  # [{"path", "range", "status"}, ...] in arrival order

Unknown paths answer 404. ``fail`` is consumed one status per request and
``cut_times`` counts down, so a test scripts exactly which attempt goes wrong.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    body: bytes
    content_type: str = "application/octet-stream"
    honour_range: bool = True
    cut_after: int | None = None
    cut_times: int = 0
    fail: list[int] = field(default_factory=list)


class LocalServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def state(self) -> LocalServer:
        return self

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(
        self,
        path: str,
        body: bytes | dict[str, Any] | list[Any],
        *,
        honour_range: bool = True,
        cut_after: int | None = None,
        cut_times: int = 1,
        fail: list[int] | None = None,
        content_type: str | None = None,
    ) -> str:
        if isinstance(body, dict | list):
            body, content_type = json.dumps(body).encode(), content_type or "application/json"
        self.routes[path] = Route(
            body=body,
            content_type=content_type or "application/octet-stream",
            honour_range=honour_range,
            cut_after=cut_after,
            cut_times=cut_times if cut_after is not None else 0,
            fail=list(fail or []),
        )
        return self.base + path

    def requests_for(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def record(self, path: str, want: str | None, status: int) -> None:
        with self._lock:
            self.requests.append({"path": path, "range": want, "status": status})

    def take_fault(self, route: Route) -> tuple[int | None, int | None]:
        """(status to fail with, byte count to cut after) for this request."""
        with self._lock:
            if route.fail:
                return route.fail.pop(0), None
            if route.cut_times > 0:
                route.cut_times -= 1
                return None, route.cut_after
        return None, None


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single ``bytes=a-b`` / ``bytes=a-`` range."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    if not match:
        return None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    return start, min(end, size - 1)


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            route = server.routes.get(path)
            want = self.headers.get("Range")
            if route is None:
                self._send(path, want, 404, b"not found", "text/plain")
                return
            fail, cut = server.take_fault(route)
            if fail is not None:
                self._send(path, want, fail, b"scripted failure", "text/plain")
                return
            body, status, extra = route.body, 200, {}
            span = _parse_range(want, len(body)) if route.honour_range else None
            if span is not None and span[0] >= len(body):
                extra["Content-Range"] = f"bytes */{len(body)}"
                self._send(path, want, 416, b"", "text/plain", extra)
                return
            if span is not None:
                status = 206
                extra["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(body)}"
                body = body[span[0] : span[1] + 1]
            extra["Accept-Ranges"] = "bytes" if route.honour_range else "none"
            self._send(path, want, status, body, route.content_type, extra, cut)

        def _send(
            self,
            path: str,
            want: str | None,
            status: int,
            body: bytes,
            content_type: str,
            extra: dict[str, str] | None = None,
            cut: int | None = None,
        ) -> None:
            server.record(path, want, status)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if cut is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:cut])
            self.wfile.flush()
            # a hard close mid-body: the client sees fewer bytes than promised
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    return Handler


@contextmanager
def serve() -> Iterator[LocalServer]:
    """A started server, stopped on exit (for a module's own fixture)."""
    server = LocalServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    with serve() as server:
        yield server


def closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
