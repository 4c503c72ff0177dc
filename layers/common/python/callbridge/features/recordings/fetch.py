"""Streaming, SSRF-safe download of one URL given by a third party (see netguard for the policy).

    with open_download(url, allow_hosts={"pbx.internal"}, max_bytes=..., timeout_s=...) as download:
        download.url             final URL after redirects
        download.content_type    media type of the response ("audio/mpeg"), or None
        download.content_length  declared length, or None (already checked against max_bytes)
        for chunk in download.chunks(): ...   raw body bytes, max_bytes and the deadline enforced

- Redirects (301, 302, 303, 307, 308) are followed here, at most MAX_REDIRECTS, and every hop goes
  through the same checks as the first URL: scheme, port, and the address on connect.
- `timeout_s` bounds the whole download: resolving, connecting, TLS, every redirect and the body. It is
  enforced on each socket operation, not only between chunks, so a trickling server cannot stretch it.
- The response must be 200 (or 203) with an identity encoding: we ask for no compression because a
  compressed body would have to be decompressed without a bound on its size.
- Errors are the netguard types: TransientFetchError for 5xx, 408, 429 (with Retry-After when given),
  timeouts and connection failures; PermanentFetchError (or BlockedAddress, DisallowedScheme,
  TooLarge) for the rest. Nothing else escapes, except bugs.

Only httpcore is used (httpx for URL parsing): the guard is its network backend, and no proxy
settings from the environment are read.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar

import httpcore
import httpx

from callbridge.infra.netguard import (
    BlockedAddress,
    DisallowedScheme,
    FetchError,
    GuardedBackend,
    PermanentFetchError,
    TooLarge,
    TransientFetchError,
    check_url,
    normalize_hosts,
)

__all__ = [
    "MAX_REDIRECTS",
    "BlockedAddress",
    "DisallowedScheme",
    "Download",
    "FetchError",
    "PermanentFetchError",
    "TooLarge",
    "TransientFetchError",
    "open_download",
]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_OK = frozenset({200, 203})
_USER_AGENT = b"CallBridge-recordings/1"
_E = TypeVar("_E", bound=BaseException)


@cache
def default_ssl_context() -> ssl.SSLContext:
    """certifi's CA bundle, hostname checking on; built once per cold start (loading the bundle
    costs tens of milliseconds)."""
    return httpx.create_ssl_context()


@dataclass
class Download:
    url: str
    status: int
    content_type: str | None
    content_length: int | None
    _response: httpcore.Response
    _max_bytes: int
    _deadline: float

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives. Raises TooLarge as soon as more than max_bytes came (whatever the
        declared length said), TransientFetchError when the body is cut short or the time is up."""
        received = 0
        with _network_errors():
            for chunk in self._response.iter_stream():
                received += len(chunk)
                if received > self._max_bytes:
                    raise TooLarge(f"body exceeds {self._max_bytes} bytes")
                if time.monotonic() > self._deadline:
                    raise TransientFetchError("download timed out")
                if chunk:
                    yield chunk


@contextmanager
def open_download(
    url: str,
    *,
    allow_hosts: Iterable[str] = frozenset(),
    max_bytes: int,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[Download]:
    """Open `url` (following redirects) and yield the response, ready to be streamed.

    `allow_hosts`: exact hostnames / IP literals the account allows (private addresses, plain http);
    a malformed entry raises ValueError (a configuration error, not the URL's fault).
    `ssl_context`: for a private CA (and tests); certifi's bundle by default."""
    if max_bytes <= 0 or timeout_s <= 0:
        raise ValueError("max_bytes and timeout_s must be positive")
    allowed = normalize_hosts(allow_hosts)
    deadline = time.monotonic() + timeout_s
    current = check_url(url, allowed)
    pool = httpcore.ConnectionPool(
        ssl_context=ssl_context or default_ssl_context(),
        network_backend=GuardedBackend(allowed, deadline=deadline),
        http1=True,
        http2=False,
        retries=0,
    )
    with pool:
        for hop in range(MAX_REDIRECTS + 1):
            with _network_errors():
                response = pool.handle_request(_request(current, timeout_s))
            try:
                if response.status in _REDIRECTS:
                    location = _header(response, b"location")
                    if location is None:
                        raise PermanentFetchError(
                            f"redirect {response.status} without a Location", status=response.status
                        )
                    if hop == MAX_REDIRECTS:
                        raise PermanentFetchError(f"more than {MAX_REDIRECTS} redirects")
                    try:
                        target = current.join(location)
                    except (httpx.InvalidURL, UnicodeError) as exc:
                        raise PermanentFetchError(f"malformed redirect target: {exc}") from None
                    current = check_url(target.copy_with(fragment=None), allowed)
                    continue
                _check_status(response)
                yield _download(current, response, max_bytes, deadline)
                return
            finally:
                # An unread redirect body is not drained: closing drops that connection instead.
                response.close()
    raise AssertionError("unreachable: the redirect loop returns or raises")  # pragma: no cover


def _request(url: httpx.URL, timeout_s: float) -> httpcore.Request:
    return httpcore.Request(
        method=b"GET",
        url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=[
            # httpx's netloc brackets IPv6 literals, which httpcore's own Host header would not.
            (b"Host", url.netloc),
            (b"User-Agent", _USER_AGENT),
            (b"Accept", b"audio/*, */*;q=0.5"),
            (b"Accept-Encoding", b"identity"),
        ],
        extensions={"timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}},
    )


def _download(url: httpx.URL, response: httpcore.Response, max_bytes: int, deadline: float) -> Download:
    encoding = (_header(response, b"content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise PermanentFetchError(f"unsupported Content-Encoding {encoding!r}")
    declared = _header(response, b"content-length")
    length: int | None = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise PermanentFetchError(f"malformed Content-Length {declared!r}") from None
        if length > max_bytes:
            raise TooLarge(f"Content-Length {length} exceeds {max_bytes} bytes")
    media = _header(response, b"content-type")
    media_type = media.split(";", 1)[0].strip().lower() if media else None
    return Download(
        url=str(url),
        status=response.status,
        content_type=media_type or None,
        content_length=length,
        _response=response,
        _max_bytes=max_bytes,
        _deadline=deadline,
    )


def _check_status(response: httpcore.Response) -> None:
    status = response.status
    if status in _OK:
        return
    if status in (408, 429) or 500 <= status <= 599:
        raise TransientFetchError(
            f"server answered {status}", status=status, retry_after_s=_retry_after(_header(response, b"retry-after"))
        )
    raise PermanentFetchError(f"server answered {status}", status=status)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


@contextmanager
def _network_errors() -> Iterator[None]:
    """httpcore's exceptions in our terms. FetchErrors raised by the guard pass through untouched."""
    try:
        yield
    except FetchError:
        raise
    except httpcore.TimeoutException:
        raise TransientFetchError("download timed out") from None
    except httpcore.ConnectError as exc:
        verification = _original(exc, ssl.SSLCertVerificationError)
        if verification is not None:
            # A certificate that does not match is a configuration problem, or an attack: retrying
            # the same host will not fix it.
            raise PermanentFetchError(f"TLS certificate verification failed: {verification.verify_message}") from None
        raise TransientFetchError(f"connection failed: {exc}") from None
    except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
        raise TransientFetchError(f"connection broken: {exc}") from None
    except (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError) as exc:
        raise PermanentFetchError(f"cannot request this URL: {exc}") from None


def _original(exc: BaseException, kind: type[_E]) -> _E | None:
    """The `kind` exception that httpcore wrapped into `exc`. httpcore keeps it as the first argument
    and as the context, but its pool re-raises `from None`, which drops __cause__."""
    for candidate in (*exc.args, exc.__cause__, exc.__context__):
        if isinstance(candidate, kind):
            return candidate
    return None
