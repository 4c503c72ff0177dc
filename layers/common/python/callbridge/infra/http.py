"""Outbound HTTP for every peer (CRMs and PBX APIs): one httpx client per peer with timeouts, retries
with exponential backoff and jitter (tenacity) that honour `Retry-After`, a per-peer rate limiter and
typed errors.

Every request goes through the address guard (infra/netguard.py, GuardedTransport below): https to
public addresses only, checked on each connection after one DNS lookup; plain http or a private
address only for the host:ports the account trusts (its `trusted_hosts`). A refused address is a
PermanentHttpError before anything is sent.

What is retried: timeouts, connection errors, 429 and 5xx. Any other 4xx is permanent for that
request. A redirect is never followed nor taken for success: it is an UnexpectedAnswer (the peer
moved, or the address is wrong), as is a 2xx whose body is not what the peer's protocol documents as
success (each client checks that: a login page, truncated JSON). No secret reaches a log line or an exception text: errors name the peer, the method, the
path (never the query string, where some peers carry keys) and the status; httpx's own exceptions,
whose text may hold a full URL, are never chained.
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpcore
import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from callbridge.infra import clock
from callbridge.infra.netguard import FetchError, GuardedBackend, PermanentFetchError, check_url, normalize_hosts
from callbridge.infra.observability import logger

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class HttpError(Exception):
    """A request to a peer failed. `body` is the peer's answer, for callers that parse error details;
    it is not part of the message, so logging the exception never logs a peer's echo of our data."""

    def __init__(self, peer: str, method: str, path: str, reason: str, *, status: int | None = None, body: str = ""):
        self.peer = peer
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.reason = reason
        super().__init__(f"{peer}: {method} {path}: {reason}")


class TransientHttpError(HttpError):
    """Timeouts, connection errors, 429, 5xx: worth trying again later. `retry_after` is the delay
    the peer asked for, in seconds, when it named one."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class UnexpectedAnswer(TransientHttpError):
    """The peer answered, but not with anything its protocol documents: a redirect, an HTML page, a
    truncated or foreign JSON body. Never success (the peer may not have taken anything), never the
    record's fault: retried later like an outage, and not in-process (the same answer would come)."""


class PermanentHttpError(HttpError):
    """A 4xx other than 429 (or an answer we cannot read): sending the same request again is useless."""


class AddressRefused(PermanentHttpError):
    """The address guard (infra/netguard.py) refused the URL or an address its host resolves to:
    nothing was sent. `why` is the guard's reason ("127.0.0.1 is loopback"), for a caller that can
    name the setting the URL came from."""

    def __init__(self, peer: str, method: str, path: str, why: str):
        super().__init__(peer, method, path, f"address refused: {why}")
        self.why = why


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


class RateLimiter:
    """A token bucket: at most `rate` requests per second on average, bursts up to `burst`.
    Shared by every client of one peer in this process (see `limiter`)."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._monotonic = monotonic
        self._sleep = sleep
        self._last = monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter(key: str, rate: float, burst: int = 1) -> RateLimiter:
    """The process-wide limiter of one peer (e.g. `retailcrm:https://shop.retailcrm.ru`)."""
    with _limiters_lock:
        found = _limiters.get(key)
        if found is None or found.rate != rate or found.burst != max(1, burst):
            found = _limiters[key] = RateLimiter(rate, burst)
        return found


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # in total, the first one included
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    jitter_s: float = 0.5
    # A Retry-After longer than this is not waited for in-process (a Lambda has a deadline): the
    # error goes up with `retry_after` set and the caller reschedules.
    max_retry_after_s: float = 30.0


class _GiveUp(Exception):
    """Raised inside the retry loop for a Retry-After too long to wait for."""

    def __init__(self, error: TransientHttpError):
        self.error = error


def mask_secrets(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret replaced, also in the forms a peer may echo it in: percent-encoded
    (form and query) and JSON-escaped."""
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
    return text


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """certifi's CA bundle, built once per cold start (loading it costs tens of milliseconds)."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport with the address guard: every URL is checked before anything is sent
    (scheme, credentials, port, an IP literal) and every connection is opened by GuardedBackend (one
    DNS lookup, every address checked, the socket connected to a checked address). `trusted` is
    normalize_hosts() of the host:ports the account trusts.

    Raises the netguard errors (BlockedAddress, DisallowedScheme, ...) for a refused address: they are
    not httpx errors, so no caller can mistake one for a network failure worth retrying."""

    def __init__(self, trusted: frozenset[str] = frozenset()) -> None:
        super().__init__(verify=_ssl_context(), retries=0)
        self._trusted = trusted
        # httpx takes no network backend: its pool is replaced by the same pool (HTTP/1.1, no retries)
        # whose only way to open a socket is the guard.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(), network_backend=GuardedBackend(trusted), http1=True, http2=False, retries=0
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_url(request.url, self._trusted)
        return super().handle_request(request)


def guarded_client(
    trusted_hosts: Iterable[str] = (),
    *,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
    **options: Any,
) -> httpx.Client:
    """An httpx client whose requests go through the address guard (GuardedTransport), for a package
    that needs a client of its own rather than an HttpPeer. `trusted_hosts`: the account's;
    `transport`: a test's (httpx.MockTransport) instead of the network. No proxy from the
    environment: it would carry the request past the guard."""
    return httpx.Client(
        transport=transport or GuardedTransport(normalize_hosts(trusted_hosts)),
        timeout=timeout_s,
        trust_env=False,
        **options,
    )


class HttpPeer:
    """One remote service. Use `request`; it returns the response of a 2xx answer or raises
    TransientHttpError (UnexpectedAnswer for a 3xx) / PermanentHttpError after the retries."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secrets: Sequence[str] = (),
        trusted_hosts: Iterable[str] = (),
    ):
        self.name = name
        # Masked in every error's `body`: a peer that echoes our request (a key in a form or JSON
        # body) must not put the key into a stored rejection reason or a log line.
        self._secrets = tuple(s for s in secrets if s)
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            # `transport` only from tests (httpx.MockTransport); otherwise the guard, and no proxy
            # from the environment, which would carry the request past the guard.
            transport=transport or GuardedTransport(normalize_hosts(trusted_hosts)),
            follow_redirects=False,
            trust_env=False,
        )
        self.requests_sent = 0  # every attempt, for tests and the benchmark

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        policy = self.retry

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, TransientHttpError) and error.retry_after is not None:
                return error.retry_after
            return float(
                wait_exponential_jitter(
                    initial=policy.backoff_initial_s, max=policy.backoff_max_s, jitter=policy.jitter_s
                )(state)
            )

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger().warning(
                "retrying a peer request",
                extra={"peer": self.name, "attempt": state.attempt_number, "error": str(error)},
            )

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            retry=retry_if_exception(
                lambda e: isinstance(e, TransientHttpError) and not isinstance(e, UnexpectedAnswer)
            ),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, params, data, json, headers)
        except _GiveUp as give_up:
            raise give_up.error from None

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        self.requests_sent += 1
        try:
            response = self._client.request(method, path, params=params, data=data, json=json, headers=headers)
        except PermanentFetchError as exc:
            # The address guard refused the URL or the address it resolves to: nothing was sent.
            raise AddressRefused(self.name, method, path, str(exc)) from None
        except FetchError as exc:  # the DNS lookup failed for now
            raise TransientHttpError(self.name, method, path, f"connection error ({exc})") from None
        except httpx.TimeoutException:
            raise TransientHttpError(self.name, method, path, "timeout") from None
        except httpx.TransportError as exc:
            raise TransientHttpError(self.name, method, path, f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if status < 300:
            return response
        if status < 400:
            # Where it points is named (scheme and host only: a query may hold a key), for the operator.
            target = urlsplit(response.headers.get("Location") or "")
            where = f" to {target.scheme}://{target.netloc}" if target.netloc else ""
            reason = mask_secrets(f"HTTP {status}: redirected{where} (has the address moved?)", self._secrets)
            raise UnexpectedAnswer(self.name, method, path, reason, status=status)
        body = mask_secrets(response.text[:4000], self._secrets)
        if status in RETRYABLE_STATUS:
            error = TransientHttpError(
                self.name,
                method,
                path,
                f"HTTP {status}",
                status=status,
                body=body,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
            if error.retry_after is not None and error.retry_after > self.retry.max_retry_after_s:
                raise _GiveUp(error)
            raise error
        raise PermanentHttpError(self.name, method, path, f"HTTP {status}", status=status, body=body)
