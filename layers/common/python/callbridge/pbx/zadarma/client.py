"""Zadarma (Novofon) REST API v1 client (docs/protocols/zadarma.md): `/v1/statistics/pbx/`,
`/v1/pbx/record/request/`, `/v1/request/callback/`, `/v1/pbx/internal/`.

Every request is a GET signed as the vendor documents (protocol.api_signature) in the
`Authorization` header; the secret never travels. Through the shared guarded HTTP client
(infra/http.py HttpPeer: the address guard, timeouts, secret masking). The API's limits - 100
requests a minute, 3 a minute for statistics - are kept per API key in this process by token
buckets, and a 429 is waited out (its Retry-After) or handed up with `retry_after` for the caller
to reschedule.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from callbridge.infra.http import HttpError, HttpPeer, RateLimiter, RetryPolicy, TransientHttpError
from callbridge.pbx.base import PbxFailure
from callbridge.pbx.zadarma.protocol import api_signature, query_string

if TYPE_CHECKING:
    import httpx

    from callbridge.core.accounts import Account

DEFAULT_TIMEOUT_S = 10.0
GENERAL_PER_MINUTE = 100
STATISTICS_PER_MINUTE = 3
PAGE_LIMIT = 1000  # the statistics' largest page


class ZadarmaError(PbxFailure):
    """A failed API request; the message names the method and status, never a key or a signature.
    `transient`: worth trying again later (a timeout, 429, 5xx); `retry_after`: the PBX's own word."""

    def __init__(
        self,
        method: str,
        reason: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"zadarma {method}: {reason}")
        self.method, self.status, self.transient, self.retry_after = method, status, transient, retry_after


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def _limiter(peer: str, kind: str, per_minute: float, sleep: Callable[[float], None]) -> RateLimiter:
    """One bucket per API key and kind in this process: every client of the key shares it. A
    bucket starts full (`per_minute` at once), then refills at the documented rate."""
    with _limiters_lock:
        found = _limiters.get((peer, kind))
        if found is None:
            found = _limiters[(peer, kind)] = RateLimiter(per_minute / 60.0, max(1, int(per_minute)), sleep=sleep)
        return found


def reset_limiters() -> None:
    """Forget every bucket (tests)."""
    with _limiters_lock:
        _limiters.clear()


class ZadarmaApi:
    def __init__(
        self,
        base_url: str,
        key: str,
        secret: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trusted_hosts: frozenset[str] = frozenset(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        per_minute: float = GENERAL_PER_MINUTE,
        statistics_per_minute: float = STATISTICS_PER_MINUTE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key, self._secret = key, secret
        self._timeout_s, self._trusted, self._transport, self._sleep = timeout_s, trusted_hosts, transport, sleep
        # The buckets are the key's, not the address's: Zadarma counts per user key.
        peer = f"{self.base_url}#{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        self._general = _limiter(peer, "general", per_minute, sleep)
        self._statistics = _limiter(peer, "statistics", statistics_per_minute, sleep)
        self.requests = 0  # sent, for tests
        self.page_limit = PAGE_LIMIT  # lines asked per statistics page (smaller in tests)

    def _get(self, method: str, params: Mapping[str, str], *, attempts: int = 2) -> dict[str, Any]:
        """`method` as `/v1/…/` (with the trailing slash the signature covers)."""
        sent = {**{k: str(v) for k, v in params.items() if v not in (None, "")}, "format": "json"}
        signature = api_signature(self._secret, method, sent)
        peer = HttpPeer(
            "zadarma",
            self.base_url,
            headers={"Authorization": f"{self._key}:{signature}"},
            timeout_s=self._timeout_s,
            retry=RetryPolicy(attempts=attempts, backoff_initial_s=0.5, backoff_max_s=4.0, jitter_s=0.2),
            transport=self._transport,
            sleep=self._sleep,
            secrets=(self._key, self._secret, signature),
            trusted_hosts=self._trusted,
        )
        (self._statistics if method.startswith("/v1/statistics/") else self._general).acquire()
        name = method.strip("/")
        try:
            with peer:
                # The query string exactly as it was signed (sorted, RFC 1738).
                response = peer.request("GET", f"{method}?{query_string(sent)}")
                self.requests += peer.requests_sent
        except TransientHttpError as error:
            self.requests += peer.requests_sent
            reason = "timed out" if error.status is None and error.reason == "timeout" else error.reason
            raise ZadarmaError(
                name, reason, status=error.status, transient=True, retry_after=error.retry_after
            ) from None
        except HttpError as error:
            self.requests += peer.requests_sent
            reason = error.reason if error.status is None else f"HTTP {error.status}: {_message(error.body)}"
            raise ZadarmaError(name, reason, status=error.status) from None
        try:
            body = json.loads(response.content or b"{}")
        except ValueError:
            raise ZadarmaError(name, "the answer is not JSON", transient=True) from None
        if not isinstance(body, dict):
            raise ZadarmaError(name, "the answer is not a JSON object", transient=True)
        if str(body.get("status", "")).lower() == "error":
            raise ZadarmaError(name, _message(json.dumps(body)), status=response.status_code)
        return body

    def statistics(self, start: str, end: str, *, skip: int = 0, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        """One page of the PBX's call statistics between two local times (`YYYY-MM-DD HH:MM:SS`)."""
        body = self._get(
            "/v1/statistics/pbx/", {"start": start, "end": end, "version": "2", "skip": str(skip), "limit": str(limit)}
        )
        stats = body.get("stats")
        if not isinstance(stats, list):
            raise ZadarmaError("statistics/pbx", "the answer has no stats list", transient=True)
        return [row for row in stats if isinstance(row, dict)]

    def record_link(self, *, call_id: str | None = None, pbx_call_id: str | None = None) -> str:
        """A fresh, temporary link of a recording (of the recording's id, else the call's first)."""
        params = {"call_id": call_id} if call_id else {"pbx_call_id": pbx_call_id or ""}
        body = self._get("/v1/pbx/record/request/", params)
        links = body.get("links")
        link = body.get("link") or (links[0] if isinstance(links, list) and links else None)
        if not isinstance(link, str) or not link.lower().startswith(("https://", "http://")):
            raise ZadarmaError("pbx/record/request", "the answer names no link", transient=True)
        return link

    def callback(self, from_: str, to: str, *, sip: str | None = None) -> dict[str, Any]:
        """Ring `from_` (an extension), then connect it to `to`. Never retried: a retry after a lost
        answer would ring the manager twice."""
        return self._get("/v1/request/callback/", {"from": from_, "to": to, "sip": sip or ""}, attempts=1)

    def internal(self) -> list[str]:
        """The PBX's extensions."""
        numbers = self._get("/v1/pbx/internal/", {}).get("numbers")
        if not isinstance(numbers, list):
            raise ZadarmaError("pbx/internal", "the answer has no numbers list", transient=True)
        return [str(n).strip() for n in numbers if str(n).strip()]


def _message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = data.get("message") if isinstance(data, dict) else None
    return str(message)[:200] if message else (body.strip()[:200] or "no details")


def for_account(account: Account, **options: Any) -> ZadarmaApi:
    """The client of the account's PBX, its keys from SSM; PbxNotConfigured without them."""
    from callbridge.infra import secrets
    from callbridge.infra.settings import get_settings
    from callbridge.pbx.base import PbxNotConfigured
    from callbridge.pbx.zadarma.settings import ZadarmaSettings

    settings = account.settings.pbx
    if not isinstance(settings, ZadarmaSettings):
        raise TypeError(f"account {account.id} has no Zadarma PBX")
    found = secrets.account_secrets(account.id, under=secrets.PBX, version=account.version)
    key = found.get(secrets.pbx_secret_name("api_key"), "")
    secret = found.get(secrets.pbx_secret_name("api_secret"), "")
    if not key or not secret:
        raise PbxNotConfigured(f"account {account.id}: the Zadarma API key and secret are not in SSM")
    options.setdefault("timeout_s", float(get_settings().pbx_timeout_s))
    return ZadarmaApi(settings.api_base, key, secret, trusted_hosts=settings.trusted_hosts, **options)
