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

from callbridge.infra.http import guarded_client
from callbridge.infra.netguard import FetchError, PermanentFetchError
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
        # The one place this client touches the network (switch to callbridge.infra.http here).
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        query[KEY_PARAM] = self.api_key
        try:
            # Through the address guard (infra.netguard); `transport` is a test's MockTransport.
            with guarded_client(self.trusted_hosts, timeout_s=self.timeout_s, transport=self.transport) as client:
                response = client.get(f"{self.api_url.rstrip('/')}/{method}", params=query)
        except PermanentFetchError as exc:
            raise TelediscountError(method, f"address refused ({exc})") from None
        except FetchError as exc:
            raise TelediscountError(method, f"request failed ({exc})", transient=True) from None
        except httpx.TimeoutException:
            raise TelediscountError(method, "timed out", transient=True) from None
        except httpx.HTTPError as exc:
            # The exception text may hold the URL, hence the key: keep only its type.
            raise TelediscountError(method, f"request failed ({type(exc).__name__})", transient=True) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise TelediscountError(method, f"HTTP {status}", status=status, transient=True)
        if status >= 400:
            raise TelediscountError(method, f"HTTP {status}", status=status)
        return Response(status, response.content, response.headers.get("content-type", ""))

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
