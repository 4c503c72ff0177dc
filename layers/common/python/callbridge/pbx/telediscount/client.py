"""telediscount PBX API client (docs/telediscount.md, "PBX API"): `outcome`, `get_calls`, `get_record`.

Every method is a GET on `{api_url}/{method}` with `abonent_api_key` in the query string: the key is
part of every URL, so no URL of this API ever goes into a log line, an exception text or the store.
Errors are typed and carry the method name and status only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from callbridge.infra.http import HttpError, HttpPeer, RetryPolicy, TransientHttpError
from callbridge.pbx.base import PbxFailure

DEFAULT_TIMEOUT_S = 20.0
KEY_PARAM = "abonent_api_key"
# httpx logs every request URL at INFO ("HTTP Request: GET …"): our URLs may carry a key.
logging.getLogger("httpx").setLevel(logging.WARNING)


class TelediscountError(PbxFailure):
    """A failed API call. `transient`: worth retrying later (timeouts, 429, 5xx)."""

    def __init__(self, method: str, reason: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(f"telediscount {method}: {reason}")
        self.method = method
        self.status = status
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content: bytes
    content_type: str


@dataclass
class TelediscountApi:
    api_url: str
    api_key: str = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    # The account's trusted host:ports (PbxSettings.trusted_hosts): its API may sit on a private address.
    trusted_hosts: frozenset[str] = frozenset()

    def method_url(self, method: str, params: Mapping[str, str] | None = None) -> str:
        """The URL of a method *without* the key: safe to store (e.g. a recording link)."""
        query = urlencode({k: v for k, v in (params or {}).items() if v})
        return f"{self.api_url.rstrip('/')}/{method}" + (f"?{query}" if query else "")

    def with_key(self, url: str) -> str:
        """`url` (one of ours, from method_url) with the key added: use at once, never store or log."""
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}{urlencode({KEY_PARAM: self.api_key})}"

    def _get(self, method: str, params: Mapping[str, str | None]) -> Response:
        # The one place this client touches the network: the shared peer client (infra.http), so the
        # address guard, timeouts, retries and secret masking are those of every other peer.
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        query[KEY_PARAM] = self.api_key
        # `outcome` rings a phone: never sent twice (a retry after a lost answer would ring it again).
        # A read is retried once, as the Cloud PBX client's are.
        attempts = 1 if method == "outcome" else 2
        peer = HttpPeer(
            "telediscount",
            self.api_url,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(attempts=attempts, backoff_initial_s=0.2, backoff_max_s=1.0, jitter_s=0.2),
            transport=self.transport,  # a test's MockTransport; otherwise the address guard
            secrets=(self.api_key,),
            trusted_hosts=self.trusted_hosts,
        )
        try:
            with peer:
                response = peer.request("GET", method, params=query)
        except TransientHttpError as error:
            # The peer's errors name the method and status, never the query string (the key).
            reason = "timed out" if error.status is None and error.reason == "timeout" else error.reason
            raise TelediscountError(method, reason, status=error.status, transient=True) from None
        except HttpError as error:
            # No status: the address guard refused the API's address before anything was sent.
            reason = error.reason if error.status is None else f"HTTP {error.status}"
            raise TelediscountError(method, reason, status=error.status) from None
        return Response(response.status_code, response.content, response.headers.get("content-type", ""))

    def outcome(self, num_a: str, num_b: str) -> dict[str, Any]:
        """Click-to-call: ring the SIP account `num_a` (e.g. SIP/00000000672), then dial `num_b`
        (universal format, e.g. 74951234567). Returns the PBX's JSON answer ({} when it is not JSON)."""
        response = self._get("outcome", {"num_a": num_a, "num_b": num_b})
        try:
            body = json.loads(response.content or b"{}")
        except ValueError:
            return {"raw": response.content.decode("utf-8", "replace")[:1000]}
        return body if isinstance(body, dict) else {"data": body}

    def get_calls(
        self,
        *,
        api_call_id: str | None = None,
        num_a: str | None = None,
        num_m: str | None = None,
        num_b: str | None = None,
    ) -> list[dict[str, Any]]:
        """Call records (every filter optional). The documentation gives no date filter: callers filter
        by `setup_time` themselves."""
        response = self._get("get_calls", {"api_call_id": api_call_id, "num_a": num_a, "num_m": num_m, "num_b": num_b})
        try:
            body = json.loads(response.content or b"[]")
        except ValueError:
            raise TelediscountError("get_calls", "answer is not JSON") from None
        return call_records(body)

    def get_record(self, api_call_id: str) -> Response:
        """The recording of one call (its bytes)."""
        return self._get("get_record", {"api_call_id": api_call_id})

    def record_url(self, api_call_id: str) -> str:
        """Where the recording of a call is, without the key (the recordings worker adds it)."""
        return self.method_url("get_record", {"api_call_id": api_call_id})


def universal_number(e164: str) -> str:
    """What `outcome` dials: the E.164 digits without `+` (country code first)."""
    return "".join(ch for ch in e164 if ch.isdigit())


def call_records(body: Any) -> list[dict[str, Any]]:
    """The records of a get_calls answer. The documentation only says "json": accept a list of records, an
    object wrapping one (`data`, `calls`, `result`, …) or an object of records keyed by id."""
    if isinstance(body, list):
        return [r for r in body if isinstance(r, dict)]
    if isinstance(body, dict):
        if "api_call_id" in body:
            return [body]
        for value in body.values():
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return list(value)
        records = [v for v in body.values() if isinstance(v, dict) and "api_call_id" in v]
        return records
    return []
