"""A threaded HTTP server on 127.0.0.1 run as a context manager: stopped on exit, even on failure."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    fake: Any  # set per server class

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        status, body, headers = self.fake.handle(parts.path, query, dict(self.headers.items()), parts.query)
        reply(self, status, body, headers)


def reply(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
    """Answer with `body` (bytes as they are, anything else as JSON); the client may have gone."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", headers.pop("content-type", "application/json"))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
        handler.wfile.write(payload)


@contextmanager
def serve(fake: Any) -> Iterator[str]:
    """Serve `fake`: an object with `handle(path, query, headers, raw_query) -> (status, body, headers)`."""
    with serve_handler(type("BoundHandler", (Handler,), {"fake": fake})) as url:
        yield url


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded server for `handler` on a free 127.0.0.1 port, stopped on exit even on failure."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
