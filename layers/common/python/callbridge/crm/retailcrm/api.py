"""retailCRM API v5 client: the calls we make to retailCRM (docs/retailcrm.md).

Auth is the `X-API-KEY` header. Nested data travels as a JSON string inside a form field (`calls=…`,
`event=…`, `integrationModule=…`). Errors look like `{"success": false, "errorMsg": …, "errors": …}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from callbridge.infra.http import HttpPeer, PermanentHttpError, RetryPolicy, UnexpectedAnswer, limiter

UPLOAD_LIMIT = 50  # calls per telephony/calls/upload request: retailCRM's own limit
RATE_PER_SECOND = 10.0  # commonly cited per-account limit; 429/503 are retried as "slow down"


class RetailCrmError(PermanentHttpError):
    """retailCRM refused a request (HTTP 4xx or `success: false`). `errors` is its per-field detail."""

    def __init__(self, method: str, path: str, reason: str, *, status: int | None, errors: Any = None, body: str = ""):
        super().__init__("retailcrm", method, path, reason, status=status, body=body)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class UploadResult:
    processed: int
    duplicates: list[str] = field(default_factory=list)  # externalIds retailCRM already had


def _answer(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    """A 2xx answer's body. Success is only `{"success": true, …}` (docs/protocols/retailcrm.md); a
    body that is not retailCRM's (a login page, truncated JSON) is an UnexpectedAnswer: retailCRM
    may not have taken anything, and it is no fault of what we sent."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        reason = f"HTTP {response.status_code}: not retailCRM's answer (no `success`)"
        raise UnexpectedAnswer("retailcrm", method, path, reason, status=response.status_code)
    if body.get("success") is False:
        raise RetailCrmError(
            method,
            path,
            str(body.get("errorMsg") or "success: false")[:500],
            status=response.status_code,
            errors=body.get("errors"),
        )
    return body


class RetailCrmApi:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        rate_per_second: float = RATE_PER_SECOND,
        **peer_options: Any,
    ):
        base = base_url.rstrip("/")
        self.peer = HttpPeer(
            "retailcrm",
            base,
            headers={"X-API-KEY": api_key},
            timeout_s=timeout_s,
            retry=retry,
            transport=transport,
            rate_limiter=limiter(f"retailcrm:{base}", rate_per_second, burst=int(rate_per_second)),
            secrets=(api_key,),
            **peer_options,
        )

    def close(self) -> None:
        self.peer.close()

    def _call(
        self, method: str, path: str, *, data: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = self.peer.request(method, path, data=data, params=params)
        except PermanentHttpError as exc:
            # A 4xx carries retailCRM's own error body: keep its message and per-field errors.
            try:
                body = json.loads(exc.body) if exc.body else {}
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            raise RetailCrmError(
                method,
                path,
                str(body.get("errorMsg") or exc.reason)[:500],
                status=exc.status,
                errors=body.get("errors"),
                body=exc.body,
            ) from None
        return _answer(response, method, path)

    def upload_calls(self, calls: Sequence[Mapping[str, Any]]) -> UploadResult:
        """POST /api/v5/telephony/calls/upload with at most 50 calls."""
        if not calls:
            return UploadResult(processed=0)
        if len(calls) > UPLOAD_LIMIT:
            raise ValueError(f"retailCRM takes at most {UPLOAD_LIMIT} calls per upload, got {len(calls)}")
        body = self._call(
            "POST", "/api/v5/telephony/calls/upload", data={"calls": json.dumps(list(calls), ensure_ascii=False)}
        )
        duplicates = body.get("duplicateCalls") or []
        processed = body.get("processedCallsCount")
        return UploadResult(
            processed=int(processed) if isinstance(processed, int) else len(calls),
            duplicates=[str(d) for d in duplicates] if isinstance(duplicates, list) else [],
        )

    def call_event(self, event: Mapping[str, Any]) -> None:
        """POST /api/v5/telephony/call/event: `in` shows the call card, `hangup` ends it."""
        self._call("POST", "/api/v5/telephony/call/event", data={"event": json.dumps(dict(event), ensure_ascii=False)})

    def manager(self, phone: str, *, details: bool = False, ignore_status: bool = False) -> dict[str, Any] | None:
        """GET /api/v5/telephony/manager: the responsible manager for a phone, or None (none free)."""
        params = {"phone": phone, "details": "1" if details else "0", "ignoreStatus": "1" if ignore_status else "0"}
        try:
            body = self._call("GET", "/api/v5/telephony/manager", params=params)
        except RetailCrmError as exc:
            if exc.status == 404:
                return None
            raise
        manager = body.get("manager")
        return manager if isinstance(manager, dict) else None

    def edit_module(self, module: Mapping[str, Any]) -> dict[str, Any]:
        """POST /api/v5/integration-modules/{code}/edit (register or update our telephony module)."""
        code = str(module["code"])
        return self._call(
            "POST",
            f"/api/v5/integration-modules/{code}/edit",
            data={"integrationModule": json.dumps(dict(module), ensure_ascii=False)},
        )

    def get_module(self, code: str) -> dict[str, Any]:
        """GET /api/v5/integration-modules/{code}: the module as retailCRM has it."""
        body = self._call("GET", f"/api/v5/integration-modules/{code}")
        module = body.get("integrationModule")
        return module if isinstance(module, dict) else body

    def customer_ids(self, phone: str) -> list[int]:
        """The ids of the customers a phone number finds (see customers_by_phone; the API key needs
        the customers scope)."""
        found = [c.get("id") for c in self.customers_by_phone(phone)]
        return [i for i in found if isinstance(i, int) and not isinstance(i, bool)]

    def customer_note_texts(self, customer_id: int, text: str) -> list[str]:
        """GET /api/v5/customers/notes: the texts of the customer's notes that contain `text`."""
        params = {"filter[customerIds][]": str(customer_id), "filter[text]": text, "limit": "100"}
        body = self._call("GET", "/api/v5/customers/notes", params=params)
        notes = body.get("notes")
        return [str(n.get("text")) for n in notes if isinstance(n, dict)] if isinstance(notes, list) else []

    def create_customer_note(self, customer_id: int, text: str, *, manager_id: int | None = None) -> None:
        """POST /api/v5/customers/notes/create (form field `note` = JSON)."""
        note: dict[str, Any] = {"text": text, "customer": {"id": customer_id}}
        if manager_id is not None:
            note["managerId"] = manager_id
        self._call("POST", "/api/v5/customers/notes/create", data={"note": json.dumps(note, ensure_ascii=False)})

    # -- customers and tasks (callback work: callbridge.crm.retailcrm.tasks) -------------------------
    def customers_by_phone(self, phone: str) -> list[dict[str, Any]]:
        """GET /api/v5/customers?filter[name]=…: retailCRM's customer search, which matches the name,
        the phones and the e-mail (the caller checks the phones of what it returns)."""
        body = self._call("GET", "/api/v5/customers", params={"filter[name]": phone, "limit": 20})
        found = body.get("customers")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    def customer_by_external_id(self, external_id: str, site: str | None) -> dict[str, Any] | None:
        """GET /api/v5/customers/{externalId}?by=externalId: None when retailCRM has none (404)."""
        params = {"by": "externalId", **({"site": site} if site else {})}
        try:
            body = self._call("GET", f"/api/v5/customers/{external_id}", params=params)
        except RetailCrmError as exc:
            if exc.status == 404:
                return None
            raise
        customer = body.get("customer")
        return customer if isinstance(customer, dict) else None

    def create_customer(self, customer: Mapping[str, Any], site: str | None) -> int:
        """POST /api/v5/customers/create (`customer` as JSON, `site`): the new customer's id."""
        data = {"customer": json.dumps(dict(customer), ensure_ascii=False), **({"site": site} if site else {})}
        return _id(self._call("POST", "/api/v5/customers/create", data=data), "POST", "/api/v5/customers/create")

    def edit_customer(self, external_id: str, changes: Mapping[str, Any], site: str | None) -> None:
        """POST /api/v5/customers/{externalId}/edit?by=externalId (`customer` as JSON, `site`)."""
        data = {
            "by": "externalId",
            "customer": json.dumps(dict(changes), ensure_ascii=False),
            **({"site": site} if site else {}),
        }
        self._call("POST", f"/api/v5/customers/{external_id}/edit", data=data)

    def tasks_by_text(self, text: str) -> list[dict[str, Any]]:
        """GET /api/v5/tasks?filter[text]=…: the tasks whose text contains `text`."""
        body = self._call("GET", "/api/v5/tasks", params={"filter[text]": text, "limit": 20})
        found = body.get("tasks")
        return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []

    def create_task(self, task: Mapping[str, Any], site: str | None) -> int:
        """POST /api/v5/tasks/create (`task` as JSON, `site`): the new task's id."""
        data = {"task": json.dumps(dict(task), ensure_ascii=False), **({"site": site} if site else {})}
        return _id(self._call("POST", "/api/v5/tasks/create", data=data), "POST", "/api/v5/tasks/create")

    def edit_task(self, task_id: int, task: Mapping[str, Any]) -> None:
        """POST /api/v5/tasks/{id}/edit (`task` as JSON): e.g. `complete: true` with a commentary."""
        self._call("POST", f"/api/v5/tasks/{task_id}/edit", data={"task": json.dumps(dict(task), ensure_ascii=False)})


def _id(body: dict[str, Any], method: str, path: str) -> int:
    value = body.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RetailCrmError(method, path, "answer without the new id", status=None, body=json.dumps(body)[:500])
