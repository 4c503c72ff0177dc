"""The local API Gateway: an HTTP/1.1 server that routes by the template's HttpApi events and
invokes the handlers with payload format 2.0 events.

A malformed request costs its sender a 4xx and, at worst, the connection; never the server.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from callbridge_local.control import PREFIX as CONTROL_PREFIX
from callbridge_local.control import ControlApi
from callbridge_local.cors import CorsConfig, is_preflight
from callbridge_local.handlers import FunctionRegistry
from callbridge_local.httpapi import (
    HttpRequest,
    HttpResponse,
    InvalidLambdaResponse,
    build_event,
    json_response,
    new_request_id,
    to_http_response,
)
from callbridge_local.routing import RouteMatch, RouteTable, SegmentKind

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "", "::"})  # noqa: S104 - names, not a bind
_LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})

MASK = "***"
# Path segments that follow one of these are credentials (telediscount's webhook URL is its secret):
# the literal before a `{secret}` path parameter in the template's routes, added when a Gateway is
# built (so a new PBX's route is covered without naming it here); telediscount's is known before.
_SECRET_PATH_PREFIXES: set[str] = {"telediscount"}
_SECRET_PATH_PARAMETERS = frozenset({"secret"})
# Query parameters whose values are credentials: the names the product treats as secrets
# (crm_token, token, apikey, api_key, password, secret), and anything ending like one.
_SECRET_PARAMETER = re.compile(r"(?:^|[_\-.])(?:token|secret|password|passwd|api[_\-]?key|signature)$")
# A path (up to a query, a fragment or whitespace) and its query, wherever they appear in a line.
_URL_PART = re.compile(r"(?P<path>/[^?#\s\"]*)(?:\?(?P<query>[^#\s\"]*))?")
# "/" percent-encoded: routing keeps it inside a segment, the handler sees it decoded as "/".
_ENCODED_SLASH = re.compile(r"(%2f)", re.IGNORECASE)


def _decoded(text: str, *, plus: bool = False) -> str:
    """``text`` percent-decoded until it stops changing (a double-encoded name is still a name),
    case-folded: names are matched however a client spells them."""
    for _ in range(4):
        decoded = unquote_plus(text) if plus else unquote(text)
        if decoded == text:
            break
        text = decoded
    return text.casefold()


def secret_path_prefixes(routes: RouteTable) -> set[str]:
    """The literal segments that precede a `{secret}` path parameter in these routes, case-folded."""
    found: set[str] = set()
    for route in routes.routes:
        for before, segment in zip(route.segments, route.segments[1:], strict=False):
            if (
                before.kind is SegmentKind.LITERAL
                and segment.kind is SegmentKind.VARIABLE
                and segment.text in _SECRET_PATH_PARAMETERS
            ):
                found.add(before.text.casefold())
    return found


def _masked_path(path: str) -> str:
    segments = path.split("/")
    after_prefix = False
    for index, segment in enumerate(segments):
        # Pieces at even indices, encoded slashes between them.
        pieces = _ENCODED_SLASH.split(segment)
        if after_prefix and segment:
            segments[index] = MASK
        else:
            for piece in range(0, len(pieces) - 2, 2):
                if _decoded(pieces[piece]) in _SECRET_PATH_PREFIXES:
                    segments[index] = "".join(pieces[: piece + 2]) + MASK
                    break
        after_prefix = _decoded(pieces[-1]) in _SECRET_PATH_PREFIXES
    return "/".join(segments)


def _masked_query(query: str) -> str:
    fields = query.split("&")
    for index, field in enumerate(fields):
        name, sep, value = field.partition("=")
        if sep and value and _SECRET_PARAMETER.search(_decoded(name, plus=True)):
            fields[index] = f"{name}={MASK}"
    return "&".join(fields)


def _masked_url_part(match: re.Match[str]) -> str:
    text = _masked_path(match["path"])
    if match["query"] is not None:
        text += "?" + _masked_query(match["query"])
    return text


def masked(text: str) -> str:
    """``text`` (a path, a request line, a log message) with credentials replaced by ``***``: the
    path segment after a secret prefix, and the values of secret query parameters. Names match in
    any case and percent-encoded, since routing decodes segments and handlers decode parameters."""
    return _URL_PART.sub(_masked_url_part, text)


# API Gateway's payload limit.
MAX_BODY_BYTES = 10 * 1024 * 1024
# How long an idle keep-alive connection may hold a thread.
IDLE_TIMEOUT_SECONDS = 30


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_idle_connections(self) -> None:
        # Wakes threads blocked reading from kept-alive connections, so shutdown is prompt.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body go out in separate writes; with Nagle's algorithm on, a keep-alive client's
    # delayed ACK would hold the body back ~40 ms on every response.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "CallBridgeLocal"

    def handle_one_request(self) -> None:
        # Like BaseHTTPRequestHandler's, but every method goes to one dispatcher instead of do_<METHOD>.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it, not after.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self._write(json_response(413, {"message": "Request Entity Too Large"}), head_only=False)
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers requests it cannot parse HTTP/0.9-style, a bare HTML body no client
        # expects; answer with a status line and a JSON message like API Gateway's instead.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._write(json_response(code, {"message": phrase}), head_only=self.command == "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), masked(format % args))

    def _read_body(self) -> bytes:
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in encoding:
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        if not raw_length.strip().isdigit():
            raise BadRequest(400, "Bad Request")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "Request Entity Too Large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest(400, "Bad Request")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest(400, "Bad Request") from None
            if size == 0:
                # Trailer section, up to the empty line.
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest(413, "Request Entity Too Large")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest(400, "Bad Request")
            chunks.append(chunk)

    def _dispatch(self) -> None:
        started = time.monotonic()
        method = self.command.upper()
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        raw_path = raw_path or "/"
        request_id = new_request_id()
        function_id = "-"
        try:
            body = self._read_body()
        except BadRequest as exc:
            self.close_connection = True
            response = json_response(exc.status, {"message": exc.message})
        else:
            try:
                response, function_id = self._respond(method, raw_path, raw_query, body, request_id)
            except Exception:
                log.exception("%s %s failed", method, masked(raw_path))
                response = json_response(500, {"message": "Internal Server Error"})
        response.headers.append(("apigw-requestid", request_id))
        self._write(response, head_only=method == "HEAD")
        # The path only: query strings and bodies may carry tokens.
        elapsed_ms = (time.monotonic() - started) * 1000
        log.info("%s %s -> %s %d (%.0f ms)", method, masked(raw_path), function_id, response.status, elapsed_ms)

    def _respond(
        self, method: str, raw_path: str, raw_query: str, body: bytes, request_id: str
    ) -> tuple[HttpResponse, str]:
        """The response, and the logical id of the function that produced it ("-" for none)."""
        gateway = self.server.gateway
        if raw_path.startswith(CONTROL_PREFIX) and gateway.control is not None:
            host = self.headers.get("Host")
            if not gateway.control_host_allowed(host):
                log.warning("refused %s %s for Host %r", method, masked(raw_path), masked(host or ""))
                message = (
                    f"{CONTROL_PREFIX}* answers only requests addressed to this machine by a loopback name "
                    f"(Host: 127.0.0.1:{gateway.port}, localhost:{gateway.port} or [::1]:{gateway.port})"
                )
                return json_response(403, {"message": message}), "-"
            return gateway.control.handle(method, raw_path, raw_query), "-"
        headers = list(self.headers.items())
        cors = gateway.cors_for(raw_path)
        if cors is not None and is_preflight(method, headers):
            # API Gateway answers it before routing: no route needs OPTIONS, no function runs.
            return cors.preflight(self.headers.get("Origin")), "-"
        event_method = method
        match = gateway.routes.match(method, raw_path)
        if match is None and method == "HEAD":
            # HEAD is GET without the body, as in most HTTP servers: the handler sees a GET (its
            # own router knows no HEAD) and only the headers are sent.
            match = gateway.routes.match("GET", raw_path)
            event_method = "GET"
        if match is None:
            return json_response(404, {"message": "Not Found"}), "-"
        request = HttpRequest(
            method=event_method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
            source_ip=self.client_address[0],
            server_port=self.server.server_address[1],
            protocol=self.request_version,
        )
        response = gateway.invoke(request, match, request_id)
        cors = gateway.cors.get(match.route.api_id)
        if cors is not None:
            response = cors.decorate(response, self.headers.get("Origin"))
        return response, match.route.function_id

    def _write(self, response: HttpResponse, *, head_only: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)


class Gateway:
    def __init__(
        self,
        routes: RouteTable,
        functions: FunctionRegistry,
        *,
        account_id: str,
        control: ControlApi | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cors: Mapping[str, CorsConfig] | None = None,
    ) -> None:
        self.routes = routes
        # Per API id, the CORS API Gateway answers for that API (none: browsers' preflights go unanswered).
        self.cors: Mapping[str, CorsConfig] = dict(cors or {})
        _SECRET_PATH_PREFIXES.update(secret_path_prefixes(routes))  # masking more is always safe
        self.functions = functions
        self.account_id = account_id
        self.control = control
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        # Bound on every interface, the gateway is still reached here through loopback; a wildcard
        # address is no URL to print or to give the CRMs.
        host = LOCALHOST if self.host in _WILDCARD_HOSTS else self.host
        return f"http://{host}:{self.port}"

    def cors_for(self, raw_path: str) -> CorsConfig | None:
        """The CORS of the API a request to ``raw_path`` reaches. On AWS each API has its own host and
        answers preflights for any path; here the APIs share one, so the path's routes name the API,
        and a path no route takes belongs to the only API there is."""
        if not self.cors:
            return None
        route = next((r for r in self.routes.routes if r.match_path(raw_path) is not None), None)
        if route is not None:
            return self.cors.get(route.api_id)
        apis = {r.api_id for r in self.routes.routes} | set(self.cors)
        return self.cors.get(apis.pop()) if len(apis) == 1 else None

    def control_host_allowed(self, host_header: str | None) -> bool:
        """Whether a request naming ``host_header`` may use /_local/*: only loopback names with this
        gateway's port. A web page whose DNS name an attacker rebinds to 127.0.0.1 reaches the
        gateway with its own name in Host, and must not drive the control endpoints."""
        host, sep, port = (host_header or "").strip().lower().rpartition(":")
        return bool(sep) and port == str(self.port) and host in _LOOPBACK_HOST_NAMES

    def bind(self) -> None:
        """Listen, without serving yet: the port is known (for the URLs printed at start) while
        early requests wait in the backlog instead of meeting a half-configured bridge."""
        try:
            self._server = _Server((self.host, self.requested_port), self)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror}") from exc

    def serve(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        self._thread.start()

    def start(self) -> None:
        self.bind()
        self.serve()

    def stop(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        # shutdown() waits for serve_forever() to acknowledge: on a server that was bound but never
        # served (start-up failed in between) it would wait forever.
        if thread is not None:
            server.shutdown()
        server.close_idle_connections()
        server.server_close()
        if thread is not None:
            thread.join(5)

    def invoke(self, request: HttpRequest, match: RouteMatch, request_id: str) -> HttpResponse:
        function = self.functions[match.route.function_id]
        try:
            event = build_event(request, match, account_id=self.account_id, request_id=request_id)
            return to_http_response(function.invoke(event))
        except InvalidLambdaResponse as exc:
            log.error("%s returned a response API Gateway rejects: %s", function.logical_id, exc)
        except Exception:
            log.exception("%s failed on %s %s", function.logical_id, request.method, masked(request.raw_path))
        return json_response(500, {"message": "Internal Server Error"})
