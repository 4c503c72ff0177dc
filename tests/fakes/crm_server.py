"""A threaded HTTP server on 127.0.0.1 for fake CRMs: GET, POST and PUT, the raw body handed to the fake.
Run as a context manager: stopped on exit, even on failure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import reply, serve_handler


class Fake(Protocol):
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]: ...


@dataclass
class Stall:
    """A CRM that hangs: while started, each request waits `seconds` (or until `recover`) and then
    gets a 504 without anything being taken, long after any sane client gave up."""

    seconds: float = 0.0
    _recovered: threading.Event = field(default_factory=threading.Event)

    def start(self, seconds: float) -> None:
        self._recovered.clear()
        self.seconds = seconds

    def recover(self) -> None:
        self.seconds = 0.0
        self._recovered.set()

    def hang(self) -> bool:
        """Hang if stalled; True when the request must be answered 504."""
        if not self.seconds:
            return False
        self._recovered.wait(self.seconds)
        return True


class _Handler(BaseHTTPRequestHandler):
    fake: Fake
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm meets the
    # client's delayed ACK and every answer on a kept-alive connection waits ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer, extra = self.fake.handle(self.command, parts.path, query, headers, body)
        reply(self, status, answer, extra)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve


@contextmanager
def serve(fake: Fake) -> Iterator[str]:
    with serve_handler(type("BoundHandler", (_Handler,), {"fake": fake})) as url:
        yield url
