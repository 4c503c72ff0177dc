"""amoCRM / Kommo REST client (docs/kommo.md, docs/protocols/kommo.md): JSON requests to the
account's own host with `Authorization: Bearer {token}` - a private integration's long-lived token,
or an OAuth access token kept fresh by callbridge.crm.kommo.oauth.

Errors come as problem+json. Our retry rules: 401/402/403/404 say our configuration is wrong (a
token, an unpaid account, the account's IP allowlist, a wrong host) and are retried like an outage
until it is fixed; 429 and 5xx are transient (`Retry-After` honoured by infra/http.py); any other
4xx refuses the request. A 2xx whose body is not JSON is not amoCRM's answer (a login page, a proxy):
transient, never taken for success. A 204 is amoCRM's "nothing found": None.

The account allows 7 requests a second: every client of one host in a process shares one bucket
below that. An add (a call, a lead, a task) is sent once per try (`once=True`): a timeout or a 5xx
may come after amoCRM saved it, and `uniq` does not de-duplicate, so only the 429 (answered before
amoCRM does anything) is retried in process; the connector looks the rest up before resending.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from callbridge.crm.base import CONFIG_STATUSES
from callbridge.crm.kommo.limits import RATE_PER_SECOND, bucket
from callbridge.infra.http import (
    HttpPeer,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
    UnexpectedAnswer,
    mask_secrets,
)

if TYPE_CHECKING:
    from callbridge.crm.kommo.oauth import TokenStore
    from callbridge.crm.kommo.settings import KommoSettings

PAGE = 250  # amoCRM's largest page and largest add
# Configuration problems: 402 is an unpaid account, which the operator (not the record) must fix.
CONFIG = CONFIG_STATUSES | {402}


class KommoError(PermanentHttpError):
    """amoCRM refused a request (problem+json `title`/`detail`, or its validation errors)."""


class _StaleToken(Exception):
    """An OAuth access token amoCRM refused (401): refreshed once and the request sent again."""


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (amoCRM's answers are read defensively)."""
    return value if isinstance(value, dict) else {}


def problem(body: str) -> str:
    """A problem+json answer in a few words (its title, detail and first validation error)."""
    try:
        found = json.loads(body) if body else {}
    except ValueError:
        return ""
    if not isinstance(found, dict):
        return ""
    words = [str(found.get(k)) for k in ("title", "detail") if found.get(k)]
    for entry in found.get("validation-errors") or []:
        for error in (entry.get("errors") or []) if isinstance(entry, dict) else []:
            if isinstance(error, dict):
                words.append(f"{error.get('path') or ''} {error.get('detail') or error.get('code') or ''}".strip())
    return "; ".join(words)[:300]


class KommoApi:
    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        auth: TokenStore | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        rate_per_second: float = RATE_PER_SECOND,
        **peer_options: Any,
    ):
        base = base_url.rstrip("/")
        self.token = token
        self.auth = auth
        shared = bucket(urlsplit(base).netloc, rate_per_second)
        secrets = (token,) if token else ()
        self.peer = HttpPeer("kommo", base, timeout_s=timeout_s, retry=retry, rate_limiter=shared,
                             secrets=secrets, **peer_options)  # fmt: skip
        self.retry = self.peer.retry
        self._once = HttpPeer("kommo", base, timeout_s=timeout_s, retry=RetryPolicy(attempts=1), rate_limiter=shared,
                              secrets=secrets, **peer_options)  # fmt: skip

    def close(self) -> None:
        self.peer.close()
        self._once.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        once: bool = False,
    ) -> Any:
        """The JSON answer (None for a 204); KommoError when amoCRM refuses the request,
        TransientHttpError for an outage, the limit or our configuration. As an OAuth client, a
        refused access token is refreshed (once per request) and the request sent again - safe for
        an add too: amoCRM checks the token before it does anything."""
        if self.auth is None:
            return self._send(method, path, params, body, once, self.token)
        token = self.auth.access_token()
        try:
            return self._send(method, path, params, body, once, token)
        except _StaleToken:
            token = self.auth.refresh(token).access_token
        try:
            return self._send(method, path, params, body, once, token)
        except _StaleToken:
            raise TransientHttpError(
                "kommo", method, path, "the access token is refused right after its refresh"
            ) from None

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, once: bool, token: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = self._attempts(method, path, params, body, headers, once)
        except TransientHttpError:
            raise
        except PermanentHttpError as exc:
            if exc.status == 401 and self.auth is not None:
                raise _StaleToken() from None
            # An OAuth access token changes, so the peer does not know it: masked here, should an
            # answer ever echo our request.
            words = mask_secrets(problem(exc.body) or exc.reason, [token])
            exc.body = mask_secrets(exc.body, [token])
            if exc.status in CONFIG:
                raise TransientHttpError("kommo", method, path, f"HTTP {exc.status}: {words}"[:300],
                                         status=exc.status) from None  # fmt: skip
            raise KommoError("kommo", method, path, f"HTTP {exc.status}: {words}"[:500], status=exc.status,
                             body=exc.body) from None  # fmt: skip
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise UnexpectedAnswer("kommo", method, path, f"HTTP {response.status_code}: not amoCRM's answer (no JSON)",
                                   status=response.status_code) from None  # fmt: skip

    def _attempts(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: dict[str, str],
        once: bool,
    ) -> Any:
        if not once:
            return self.peer.request(method, path, params=params, json=body, headers=headers)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self._once.request(method, path, params=params, json=body, headers=headers)
            except TransientHttpError as exc:
                # Only the limit is known to come before amoCRM did anything.
                if exc.status != 429 or attempt == self.retry.attempts:
                    raise
                if exc.retry_after is not None and exc.retry_after > self.retry.max_retry_after_s:
                    raise
                wait = exc.retry_after or min(self.retry.backoff_max_s, self.retry.backoff_initial_s * 2**attempt)
                time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def embedded(self, answer: Any, key: str, method: str, path: str) -> list[dict[str, Any]]:
        """`_embedded[key]` of a documented answer; None (a 204) is an empty list. Anything else is
        not amoCRM's answer: it may have taken nothing, retried later."""
        if answer is None:
            return []
        found = answer.get("_embedded") if isinstance(answer, dict) else None
        items = found.get(key) if isinstance(found, dict) else None
        if not isinstance(items, list):
            raise UnexpectedAnswer("kommo", method, path, f"not amoCRM's answer (no _embedded.{key})")
        return [item for item in items if isinstance(item, dict)]

    def pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None, *, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Every item of a list, page after page (at most `limit` pages)."""
        found: list[dict[str, Any]] = []
        for page in range(1, limit + 1):
            answer = self.request("GET", path, params={**(params or {}), "page": page, "limit": PAGE})
            items = self.embedded(answer, key, "GET", path)
            found.extend(items)
            links = answer.get("_links") if isinstance(answer, dict) else None
            if len(items) < PAGE or not (isinstance(links, dict) and links.get("next")):
                break
        return found


def open_api(account_id: str, settings: KommoSettings, **options: Any) -> KommoApi:
    """The client of one amoCRM of an account, whichever way the account file gives (settings
    with their secrets filled: callbridge.crm.base.with_secrets)."""
    options.setdefault("trusted_hosts", settings.trusted_hosts)
    if settings.app is not None:
        from callbridge.crm.kommo.oauth import TokenStore

        store = TokenStore(account_id, settings, timeout_s=float(options.get("timeout_s", 10.0)))
        return KommoApi(settings.base_url, auth=store, **options)
    assert settings.token is not None  # KommoSettings: exactly one of token and app
    return KommoApi(settings.base_url, token=settings.token.get_secret_value(), **options)
