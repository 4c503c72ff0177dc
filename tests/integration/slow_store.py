"""A DynamoDB in trouble, on 127.0.0.1: a proxy in front of the moto server that passes every request
through, except DynamoDB writes while a fault is set - answered ProvisionedThroughputExceededException
after a delay (a throttling table that is also slow to say so), or held for a while and then passed
through (a slow table: the write lands after its client gave up). The handlers' own boto3 clients,
retries and timeouts are what is under test, so the fault comes over the wire as DynamoDB sends it.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
_THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}

Fault = Literal["throttled", "slow"] | None


@dataclass
class SlowStore:
    upstream: str
    fault: Fault = None
    delay: float = 0.0
    writes_faulted: int = 0
    _healed: threading.Event = field(default_factory=threading.Event)
    _in_flight: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    def set_fault(self, fault: Fault, delay: float) -> None:
        self.fault, self.delay = fault, delay
        self._healed.clear()

    def heal(self, timeout: float = 10.0) -> None:
        """No more faults; a held write goes on now, and this returns once it has landed."""
        self.fault = None
        self._healed.set()
        with self._idle:
            assert self._idle.wait_for(lambda: self._in_flight == 0, timeout), "a held write never landed"

    def _enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()


def _handler(store: SlowStore) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(store.upstream)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation = self.headers.get("X-Amz-Target", "").partition(".")[2]
            fault = store.fault if operation in _WRITES else None
            if fault is not None:
                store.writes_faulted += 1
            store._enter()
            try:
                if fault == "throttled":
                    store._healed.wait(store.delay)
                    self._answer(400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(_THROTTLED).encode())
                    return
                if fault == "slow":
                    store._healed.wait(store.delay)
                self._forward(body)
            finally:
                store._leave()

        def _forward(self, body: bytes) -> None:
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                payload = answer.read()
                passed = {k: v for k, v in answer.getheaders() if k.lower() not in ("transfer-encoding", "connection")}
            finally:
                connection.close()
            self._answer(answer.status, passed | {"Content-Length": str(len(payload))}, payload)

        def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up waiting (its read timeout): what a slow table looks like

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

    return Proxy


@contextmanager
def slow_store(upstream: str) -> Iterator[tuple[str, SlowStore]]:
    """(endpoint, control) of a proxy in front of `upstream`, stopped when the block ends."""
    store = SlowStore(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store
    finally:
        store.fault = None
        store._healed.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
