"""Test doubles for the recordings tests: a fake network that never lets a socket leave the machine,
and a real HTTP(S) file server on 127.0.0.1.

FakeNet patches name resolution and socket connects. Test hostnames resolve to the addresses a test
chooses; IP literals are parsed locally (AI_NUMERICHOST: no DNS query); any other name fails to
resolve. A connect to anything but a loopback IP *literal* never reaches the kernel: it is recorded as
a violation, raises LeftTheMachine (a BaseException, which code under test does not swallow), and the
fixture fails the test on teardown. Addresses a test declares as sinkholes stand for public servers:
a connect to them is recorded and refused locally, without a packet, so that a test can see which
address the code under test chose to connect to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class LeftTheMachine(BaseException):
    """A connect to a non-loopback address was attempted: the guard under test is broken."""


class FakeNet:
    def __init__(self) -> None:
        self.names: dict[str, list[str] | Callable[[], list[str]]] = {}
        self.sinkholes: set[str] = set()
        self.lookups: list[str] = []  # hostnames that went through name resolution (not IP literals)
        self.connects: list[tuple[str, int]] = []  # every TCP connect attempt, allowed or not
        self.violations: list[str] = []

    def add(self, name: str, *addresses: str) -> None:
        self.names[name] = list(addresses)

    def add_rebinding(self, name: str, first: list[str], later: list[str]) -> None:
        """A hostname whose first answer passes the guard and every later one points inside."""
        answers = iter([first])
        self.names[name] = lambda: next(answers, later)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)
        monkeypatch.setattr(socket.socket, "connect", self._connect_method())
        monkeypatch.setattr(socket.socket, "connect_ex", self._connect_ex_method())

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            return _real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        self.lookups.append(name)
        answer = self.names.get(name.lower().rstrip("."))
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answer() if callable(answer) else answer
        infos: list[Any] = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 6:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port), 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port))))
        return infos

    def check(self, host: Any, port: Any, *, record: bool = True) -> None:
        """Raise unless a connect to (host, port) may really happen (loopback IP literal only)."""
        try:
            address = ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            # A name handed to connect() would be resolved by the C library, behind the guard's back.
            self.violations.append(f"connect to a name, not an address: {host}:{port}")
            raise LeftTheMachine(f"connect to a name: {host}") from None
        if record:
            self.connects.append((str(address), int(port)))
        if address.is_loopback:
            return
        if str(address) in self.sinkholes:
            raise ConnectionRefusedError(f"sinkhole {address}:{port} (test double, nothing sent)")
        self.violations.append(f"connect to {address}:{port}")
        raise LeftTheMachine(f"attempted to connect to {address}:{port}")

    def create_connection(self, address: tuple[Any, Any], *args: Any, **kwargs: Any) -> socket.socket:
        # A loopback connect is recorded once, by the socket.connect that the real one makes.
        self.check(*address[:2], record=not _is_loopback(address[0]))
        return _real_create_connection(address, *args, **kwargs)

    def _connect_method(self) -> Callable[[socket.socket, Any], None]:
        net = self

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                net.check(*address[:2])
            _real_connect(sock, address)

        return connect

    def _connect_ex_method(self) -> Callable[[socket.socket, Any], int]:
        net = self

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                net.check(*address[:2])
            return _real_connect_ex(sock, address)

        return connect_ex


def guarded_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNet]:
    """The body of a `net` fixture: `yield from guarded_network(monkeypatch)`."""
    fake = FakeNet()
    fake.install(monkeypatch)
    yield fake
    if fake.violations:
        pytest.fail(f"the code under test tried to leave the machine: {fake.violations}")


def _is_loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# The file server
# ---------------------------------------------------------------------------------------------
Body = bytes | Callable[[], Iterable[bytes]]


@dataclass
class Reply:
    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)
    # None: Content-Length for bytes bodies, chunked for generated ones; an int is sent as is (a lie
    # when it does not match the body).
    content_length: int | None = None
    delay_s: float = 0.0  # before the status line


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up early (TooLarge, timeouts, TLS refusals) are what many tests provoke.
        pass


class RecordingServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose routes answer with scripted replies: the n-th
    request to a path gets its n-th reply (the last one repeats)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.seen: list[Seen] = []
        self.sni: list[str | None] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            tls.sni_callback = self._on_sni
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.url(path)

    def allow(self, *hosts: str) -> frozenset[str]:
        """An allowlist of this server's port on each host (127.0.0.1 by default): host:port entries,
        since an allowed host opens only the port named."""
        return frozenset(f"{host}:{self.port}" for host in hosts or ("127.0.0.1",))

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self._scheme}://{host}:{self.port}{path}"

    def _on_sni(self, _sock: Any, name: str | None, _ctx: Any) -> None:
        self.sni.append(name)

    def _next_reply(self, path: str) -> Reply | None:
        with self._lock:
            replies = self.routes.get(path)
            self.hits[path] += 1
            if not replies:
                return None
            return replies[min(self.hits[path], len(replies)) - 1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.seen.append(Seen(path=path, headers={k.lower(): v for k, v in self.headers.items()}))
                reply = server._next_reply(path)
                if reply is None:
                    reply = Reply(status=404, body=b"not found")
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    # The client gave up (TooLarge, a timeout): nothing to clean up.
                    self.close_connection = True

            def _send(self, reply: Reply) -> None:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, bytes):
                    length = len(reply.body) if reply.content_length is None else reply.content_length
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    if length != len(reply.body):
                        self.close_connection = True
                    return
                if reply.content_length is not None:
                    self.send_header("Content-Length", str(reply.content_length))
                    self.end_headers()
                    for chunk in reply.body():
                        self.wfile.write(chunk)
                    self.close_connection = True
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in reply.body():
                    if chunk:
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def generated(size: int, *, seed: int = 7, block: int = 1024 * 1024) -> Callable[[], Iterator[bytes]]:
    """A deterministic pseudo-random body of `size` bytes, produced block by block (never whole)."""

    def produce() -> Iterator[bytes]:
        base = random.Random(seed).randbytes(block)
        sent = 0
        index = 0
        while sent < size:
            # The block number in front keeps blocks distinct, so that a lost or repeated block
            # changes the digest.
            data = (index.to_bytes(8, "big") + base[8:])[: size - sent]
            yield data
            sent += len(data)
            index += 1

    return produce


def digest(body: Body) -> tuple[int, str]:
    """(size, sha256 hex) of a body, streaming a generated one."""
    if isinstance(body, bytes):
        return len(body), hashlib.sha256(body).hexdigest()
    hasher = hashlib.sha256()
    size = 0
    for chunk in body():
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()
