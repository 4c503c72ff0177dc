"""A threaded HTTP server on 127.0.0.1 for fake CRMs: GET, POST, PUT and PATCH, the raw body handed to the fake.
Run as a context manager: stopped on exit, even on failure. With `Faults`, a share of the requests
never reach the fake and get what a broken CRM or a proxy in front of it answers instead."""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
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


# What a CRM that is not answering as documented sends (docs/delivery.md: only a CRM's documented
# success counts): a redirect (a moved host, http→https), a login or error page with 200, JSON cut
# off, a throttle, a server error. None of them took the request.
FAULT_KINDS = ("redirect", "html", "truncated json", "429", "5xx")


@dataclass
class Faults:
    """Answers `share` of the requests with one of FAULT_KINDS before the fake sees them. Whether a
    request fails depends on the seed, the request (method, path, body) and how many times that same
    request came before, not on the order threads send them in: one seed gives one set of failing
    requests, and a request that failed may pass when it is sent again. The kinds take turns, so
    that any five faults include each kind once."""

    seed: int
    share: float = 0.0
    answered: Counter[str] = field(default_factory=Counter)  # fault kind -> times answered
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]] | None:
        if not self.share:
            return None
        digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()
        with self._lock:
            repeat = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}:{digest}:{repeat}")
        if rng.random() >= self.share:
            return None
        with self._lock:
            kind = FAULT_KINDS[sum(self.answered.values()) % len(FAULT_KINDS)]
            self.answered[kind] += 1
        if kind == "redirect":
            target = rng.choice(["https://crm.example.com/moved", "/login", "http://127.0.0.1:9/"])
            return rng.choice([301, 302, 307, 308]), b"", {"location": target}
        if kind == "html":
            return 200, b"<!DOCTYPE html><html><body><form>Log in</form></body></html>", {"content-type": "text/html"}
        if kind == "truncated json":
            return 200, b'{"success": true, "data": [{"id": 1, "resu', {}
        if kind == "429":
            return 429, {"errorMsg": "Rate limit exceeded"}, {"retry-after": "1"}
        status = rng.choice([500, 502, 503, 504])
        return status, b"<html><body>Bad Gateway</body></html>", {"content-type": "text/html"}


class _Handler(BaseHTTPRequestHandler):
    fake: Fake
    faults: Faults | None = None
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
        fault = self.faults.answer(self.command, self.path, body) if self.faults is not None else None
        status, answer, extra = fault or self.fake.handle(self.command, parts.path, query, headers, body)
        reply(self, status, answer, extra)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve


@contextmanager
def serve(fake: Fake, faults: Faults | None = None) -> Iterator[str]:
    with serve_handler(type("BoundHandler", (_Handler,), {"fake": fake, "faults": faults})) as url:
        yield url
