"""Bitrix24 REST client (docs/bitrix24.md, docs/protocols/bitrix24.md): the methods we call, through
the portal's inbound webhook, or as a local application (`https://{portal}/rest/{method}.json` with
`auth={access token}`, the tokens kept fresh by callbridge.crm.bitrix24.oauth).

A method is `POST {webhook}/{method}.json` with form fields, arrays and maps in PHP's bracket form
(`USER_ID[]=1`, `FILTER[CALL_ID]=…`). An answer is `{"result": …, "time": {…}}`; a refusal is
`{"error": CODE, "error_description": …}` with a 4xx/5xx status. `batch` runs up to 50 methods in one
request and answers each one's result or error by the name we gave it.

The webhook URL holds a secret (its code), so it is the client's base URL and never a request path:
our errors name the method, not the URL. The portal allows about 2 requests per second on average
(a leaky bucket; QUERY_LIMIT_EXCEEDED, HTTP 503, when it overflows): every client of one portal in a
process shares one limiter below that, and a 503 is retried with backoff like any outage.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from callbridge.infra.http import (
    HttpPeer,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
    UnexpectedAnswer,
    limiter,
    mask_secrets,
)

if TYPE_CHECKING:
    from callbridge.crm.bitrix24.oauth import TokenStore
    from callbridge.crm.bitrix24.settings import Bitrix24Settings

BATCH_LIMIT = 50  # methods per batch request: Bitrix24's own limit
RATE_PER_SECOND = 2.0  # the documented average; the portal's bucket takes bursts, we stay below it
BURST = 10
# Errors that say our access is wrong (webhook code, scope, a method the portal lacks), not the
# record: retried like an outage until the account file is fixed (callbridge.crm.base.CONFIG_STATUSES).
CONFIG_ERRORS = frozenset(
    {"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "insufficient_scope", "expired_token", "invalid_token",
     "ERROR_METHOD_NOT_FOUND", "ACCESS_DENIED", "WRONG_AUTH_TYPE", "INVALID_REQUEST"}
)  # fmt: skip
LIMIT_ERRORS = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"})
# A stale access token: refreshed once and the method sent again. Safe for finish and attachRecord
# too: the portal checks the token before it does anything.
TOKEN_ERRORS = frozenset({"expired_token", "invalid_token"})
# OAuth values in a URL's query (the OAuth server's GET): masked in httpx's request log line.
_OAUTH_QUERY = re.compile(r"((?:client_secret|refresh_token|access_token|auth|code)=)[^&\s\"']+")


class _MaskWebhookCodes(logging.Filter):
    """httpx logs every request's URL at INFO; a webhook URL holds its code, so that line is
    rewritten with the codes of the clients made in this process masked."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = _OAUTH_QUERY.sub(r"\1***", mask_secrets(text, sorted(self.codes)))
        if masked != text:
            record.msg, record.args = masked, ()
        return True


_MASK = _MaskWebhookCodes()
logging.getLogger("httpx").addFilter(_MASK)


class _StaleToken(Exception):
    """The portal refused our access token (expired_token / invalid_token): refresh and resend."""


class Bitrix24Error(PermanentHttpError):
    """Bitrix24 refused a method (`error`, `error_description`)."""

    def __init__(self, method: str, code: str, description: str, *, status: int | None, body: str = ""):
        super().__init__("bitrix24", "POST", method, f"{code}: {description}"[:500], status=status, body=body)
        self.code = code
        self.description = description


@dataclass(frozen=True, slots=True)
class MethodError:
    """One method's refusal inside a batch."""

    code: str
    description: str

    def __str__(self) -> str:
        return f"{self.code}: {self.description}"[:500]


def php_form(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Form fields in PHP's bracket form, the way Bitrix24 reads nested parameters."""
    fields: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            fields.extend(php_form(value, name))
        elif isinstance(value, list | tuple):
            fields.extend((f"{name}[]", _scalar(v)) for v in value)
        else:
            fields.append((name, _scalar(value)))
    return fields


def form_fields(params: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """php_form as the HTTP client's form: a repeated name (`USER_ID[]` of a list) keeps every
    value - a plain dict of the pairs would keep only the last (a hide for two managers would
    reach one)."""
    fields: dict[str, str | list[str]] = {}
    for name, value in php_form(params):
        present = fields.get(name)
        if present is None:
            fields[name] = value
        else:
            fields[name] = [*(present if isinstance(present, list) else [present]), value]
    return fields


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _error(body: Any) -> tuple[str, str] | None:
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"]), str(body.get("error_description") or "")
    return None


def webhook_secret(webhook_url: str) -> str:
    """The code part of a webhook URL (masked in every error body and log line)."""
    parts = [p for p in urlsplit(webhook_url).path.split("/") if p]
    return parts[-1] if len(parts) >= 3 else ""


class Bitrix24Api:
    def __init__(
        self,
        webhook_url: str,
        *,
        auth: TokenStore | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        rate_per_second: float = RATE_PER_SECOND,
        **peer_options: Any,
    ):
        base = webhook_url.rstrip("/")
        host = urlsplit(base).netloc
        # App mode: `base` is https://{portal}/rest, each request carries `auth` (an access token).
        self.auth = auth
        if code := webhook_secret(base):
            _MASK.codes.add(code)
        self.peer = HttpPeer(
            "bitrix24",
            base,
            timeout_s=timeout_s,
            retry=retry,
            # One bucket per portal, whatever webhook of it: the limit is the portal's.
            rate_limiter=limiter(f"bitrix24:{host}", rate_per_second, burst=BURST),
            secrets=(webhook_secret(base), base),
            **peer_options,
        )
        # For what must not be sent twice (finish, attachRecord): no in-process retry of an answer
        # that may come after the portal did the work; only the limit error, which comes before it.
        self.retry = self.peer.retry
        self._once = HttpPeer(
            "bitrix24",
            base,
            timeout_s=timeout_s,
            retry=RetryPolicy(attempts=1),
            rate_limiter=self.peer.rate_limiter,
            secrets=(webhook_secret(base), base),
            **peer_options,
        )

    def close(self) -> None:
        self.peer.close()
        self._once.close()

    def _request(self, path: str, data: dict[str, str | list[str]], repeatable: bool) -> Any:
        if repeatable:
            return self.peer.request("POST", path, data=data)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self._once.request("POST", path, data=data)
            except TransientHttpError as exc:
                limited = any(f'"{code}"' in exc.body for code in LIMIT_ERRORS)
                if not limited or attempt == self.retry.attempts:
                    raise
                wait = exc.retry_after or min(self.retry.backoff_max_s, self.retry.backoff_initial_s * 2**attempt)
                time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, repeatable: bool = True) -> Any:
        """One method's `result`; Bitrix24Error when it refuses, TransientHttpError for an outage,
        the rate limit, or our access being wrong. `repeatable=False`: an outage's answer is not
        retried here (the portal may have done the work), only the limit error. As an application,
        a stale access token is refreshed (once per call) and the method sent again."""
        path = f"{method}.json"
        data = form_fields(params or {})
        if self.auth is None:
            return self._call(method, path, data, repeatable, "")
        token = self.auth.access_token()
        try:
            return self._call(method, path, {**data, "auth": token}, repeatable, token)
        except _StaleToken:
            token = self.auth.refresh(token).access_token
        try:
            return self._call(method, path, {**data, "auth": token}, repeatable, token)
        except _StaleToken:
            raise TransientHttpError(
                "bitrix24", "POST", method, "the access token is refused right after its refresh"
            ) from None

    def _call(self, method: str, path: str, data: dict[str, str | list[str]], repeatable: bool, token: str) -> Any:
        try:
            response = self._request(path, data, repeatable)
        except TransientHttpError:
            raise
        except PermanentHttpError as exc:
            try:
                body = json.loads(exc.body) if exc.body else {}
            except ValueError:
                body = {}
            found = _error(body)
            code, description = found if found else ("HTTP", exc.reason)
            if token and code in TOKEN_ERRORS:
                raise _StaleToken() from None
            if token:  # a portal that echoes the request must not put the token into a reason
                description = mask_secrets(description, [token])
                exc.body = mask_secrets(exc.body, [token])
            if code in CONFIG_ERRORS or code in LIMIT_ERRORS or exc.status in (401, 403):
                raise TransientHttpError("bitrix24", "POST", method, f"{code}: {description}"[:300],
                                         status=exc.status) from None  # fmt: skip
            raise Bitrix24Error(method, code, description, status=exc.status, body=exc.body) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        found = _error(body)
        if found:
            raise Bitrix24Error(method, *found, status=response.status_code)
        # Success is `{"result": …}` (docs/protocols/bitrix24.md); anything else (a login page,
        # truncated JSON) is not the portal's answer: it may have taken nothing, retried later.
        if not isinstance(body, dict) or "result" not in body:
            reason = f"HTTP {response.status_code}: not the portal's answer (no result)"
            raise UnexpectedAnswer("bitrix24", "POST", method, reason, status=response.status_code)
        return body["result"]

    def batch(
        self,
        commands: Sequence[tuple[str, str, Mapping[str, Any]]],
        *,
        repeatable: bool = True,
        tolerate: frozenset[str] = frozenset(),
    ) -> dict[str, Any | MethodError]:
        """Run (name, method, params) commands in batch requests of at most 50; each name's result
        or MethodError. `halt=0`: one refusal does not stop the others. A command refused with an
        access or limit error stops the delivery (retried like an outage) unless its code is in
        `tolerate`: then it is that command's MethodError, for a caller that can do without it."""
        answers: dict[str, Any | MethodError] = {}
        for start in range(0, len(commands), BATCH_LIMIT):
            chunk = commands[start : start + BATCH_LIMIT]
            cmd = {name: f"{method}?{urlencode(php_form(params))}" for name, method, params in chunk}
            result = self.call("batch", {"halt": 0, "cmd": cmd}, repeatable=repeatable)
            results = result.get("result") if isinstance(result, dict) else None
            errors = result.get("result_error") if isinstance(result, dict) else None
            results = results if isinstance(results, dict) else {}
            errors = errors if isinstance(errors, dict) else {}
            for name, _, _ in chunk:
                failed = _error(errors.get(name))
                if failed is not None:
                    code, description = failed
                    if (code in CONFIG_ERRORS or code in LIMIT_ERRORS) and code not in tolerate:
                        raise TransientHttpError("bitrix24", "POST", "batch", f"{name}: {code}")
                    answers[name] = MethodError(code, description)
                elif name in results:
                    answers[name] = results[name]
                else:
                    answers[name] = MethodError("NO_RESULT", "the batch answered nothing for this command")
        return answers


def open_api(account_id: str, settings: Bitrix24Settings, **options: Any) -> Bitrix24Api:
    """The client of one Bitrix24 of an account, whichever way the account file gives (settings
    with their secrets filled: callbridge.crm.base.with_secrets)."""
    options.setdefault("trusted_hosts", settings.trusted_hosts)
    if settings.app is not None:
        from callbridge.crm.bitrix24.oauth import TokenStore

        store = TokenStore(account_id, settings, timeout_s=float(options.get("timeout_s", 10.0)))
        return Bitrix24Api(f"{settings.app.portal}/rest", auth=store, **options)
    assert settings.webhook_url is not None  # Bitrix24Settings: exactly one of webhook_url and app
    return Bitrix24Api(settings.webhook_url.get_secret_value(), **options)
