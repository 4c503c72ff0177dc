"""Fake retailCRM API v5 (docs/protocols/retailcrm.md): telephony calls/upload, call/event, manager,
integration-modules and customer notes (customers by phone, notes, notes/create), validating every request against the spec and recording what arrived."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.crm_server import Stall

DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
RESULTS = {"answered", "busy", "failed", "no answer", "not allowed", "unknown"}
HANGUP_STATUSES = {"answered", "busy", "cancel", "failed", "no answered"}
CALL_FIELDS = {
    "date", "type", "phone", "code", "userId", "result", "duration", "durationWaiting", "externalId",
    "recordUrl", "source", "externalPhone", "site", "clientId",
}  # fmt: skip
# integrationModule (docs/protocols/retailcrm.md, "Registering the telephony module"; API v5's model).
MODULE_FIELDS = {
    "code", "integrationCode", "active", "freeze", "name", "logo", "clientId", "native", "baseUrl", "actions",
    "availableCountries", "accountUrl", "integrations",
}  # fmt: skip
TELEPHONY_FIELDS = {
    "clientId", "makeCallUrl", "changeUserStatusUrl", "allowEdit", "inputEventSupported", "outputEventSupported",
    "hangupEventSupported", "additionalCodes", "externalPhones",
}  # fmt: skip
URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")
EVENT_FIELDS = {
    "phone", "type", "codes", "userIds", "site", "hangupStatus", "externalPhone", "callExternalId",
    "webAnalyticsData",
}  # fmt: skip


@dataclass
class FakeRetailCrm:
    api_key: str
    uploads: list[list[dict[str, Any]]] = field(default_factory=list)  # accepted upload requests
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # externalId -> call (first copy)
    received: dict[str, int] = field(default_factory=dict)  # externalId -> times received
    events: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    managers: dict[str, dict[str, Any]] = field(default_factory=dict)  # phone -> manager
    customers: dict[str, list[int]] = field(default_factory=dict)  # phone -> customer ids
    notes: list[dict[str, Any]] = field(default_factory=list)  # customer notes created: {id, customerId, text…}
    errors: list[str] = field(default_factory=list)  # spec violations seen
    requests: int = 0
    down_status: int | None = None  # answer this status to everything while set
    stall: Stall = field(default_factory=Stall)
    reject_phones: set[str] = field(default_factory=set)  # calls with these phones are refused (400)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _violation(self, message: str) -> tuple[int, Any, dict[str, str]]:
        self.errors.append(message)
        return 400, {"success": False, "errorMsg": message}, {}

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests += 1
        if self.stall.hang():
            return 504, {"success": False, "errorMsg": "gateway timeout"}, {}
        with self._lock:
            if self.down_status is not None:
                return self.down_status, {"success": False, "errorMsg": "down"}, {}
            if headers.get("x-api-key") != self.api_key:
                return 403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'}, {}
            form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            if method == "POST" and "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
                return self._violation("POST body must be form-encoded")
            if (method, path) == ("POST", "/api/v5/telephony/calls/upload"):
                return self._upload(form)
            if (method, path) == ("POST", "/api/v5/telephony/call/event"):
                return self._event(form)
            if (method, path) == ("GET", "/api/v5/telephony/manager"):
                manager = self.managers.get(query.get("phone", ""))
                return 200, ({"success": True, "manager": manager} if manager else {"success": True}), {}
            if (method, path) == ("GET", "/api/v5/customers"):
                ids = self.customers.get(query.get("filter[name]", ""), [])
                return 200, {"success": True, "customers": [{"id": i} for i in ids]}, {}
            if (method, path) == ("GET", "/api/v5/customers/notes"):
                wanted = query.get("filter[customerIds][]", "")
                text = query.get("filter[text]", "")
                found = [n for n in self.notes if str(n["customer"]["id"]) == wanted and text in n["text"]]
                return 200, {"success": True, "notes": found}, {}
            if (method, path) == ("POST", "/api/v5/customers/notes/create"):
                return self._note(form)
            match = re.fullmatch(r"/api/v5/integration-modules/([A-Za-z0-9_-]+)(/edit)?", path)
            if match and method == "POST" and match.group(2):
                module = json.loads(form.get("integrationModule", "null") or "null")
                if not isinstance(module, dict) or module.get("code") != match.group(1):
                    return self._violation("integrationModule must be a JSON object with the code of the URL")
                problem = self._module_problem(module)
                if problem:
                    return self._violation(f"integrationModule: {problem}")
                self.modules[match.group(1)] = module
                return 201, {"success": True}, {}
            if match and method == "GET" and not match.group(2):
                module = self.modules.get(match.group(1))
                if module is None:
                    return 404, {"success": False, "errorMsg": "Not found"}, {}
                return 200, {"success": True, "integrationModule": module}, {}
            return 404, {"success": False, "errorMsg": "Not found"}, {}

    @staticmethod
    def _module_problem(module: dict[str, Any]) -> str | None:
        """What the spec's module example carries: `code`, `active`, `name`, `logo`, `accountUrl` and
        the telephony settings. `logo` is an image retailCRM can fetch: an http(s) URL of an SVG (the
        example's `logo.svg`; retailCRM takes module logos as SVG). `accountUrl` is a page of the
        integration (the example's `/settings`), not the API root `baseUrl`."""
        unknown = set(module) - MODULE_FIELDS
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        if not isinstance(module.get("active"), bool) or not isinstance(module.get("name"), str) or not module["name"]:
            return "active (bool) and name (string) are required"
        logo = module.get("logo")
        if not isinstance(logo, str) or not URL.match(logo) or not urlsplit(logo).path.lower().endswith(".svg"):
            return f"logo {logo!r} is not the http(s) URL of an SVG"
        page = module.get("accountUrl")
        if not isinstance(page, str) or not URL.match(page) or urlsplit(page).path.strip("/") == "":
            return f"accountUrl {page!r} is not the http(s) URL of a page"
        if page.rstrip("/") == str(module.get("baseUrl") or "").rstrip("/"):
            return "accountUrl is the API root (baseUrl), not a page about the integration"
        telephony = (module.get("integrations") or {}).get("telephony")
        if not isinstance(telephony, dict):
            return "integrations.telephony is required"
        if set(telephony) - TELEPHONY_FIELDS:
            return f"unknown telephony fields {sorted(set(telephony) - TELEPHONY_FIELDS)}"
        for name in ("makeCallUrl", "changeUserStatusUrl"):
            if name in telephony and not URL.match(str(telephony[name])):
                return f"{name} is not an http(s) URL"
        if not isinstance(telephony.get("clientId"), str) or not telephony["clientId"]:
            return "integrations.telephony.clientId is required"
        return None

    def _note(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """customers/notes/create: `note` = JSON {text, customer: {id | externalId}, managerId?}."""
        try:
            note = json.loads(form.get("note", ""))
        except ValueError:
            return self._violation("note is not JSON")
        if not isinstance(note, dict) or set(note) - {"text", "customer", "managerId"}:
            return self._violation("note must be an object of text, customer and managerId")
        if not isinstance(note.get("text"), str) or not note["text"].strip():
            return self._violation("note text missing")
        customer = note.get("customer")
        known = {i for ids in self.customers.values() for i in ids}
        if not isinstance(customer, dict) or customer.get("id") not in known:
            return 400, {"success": False, "errorMsg": "Customer not found"}, {}
        if "managerId" in note and not isinstance(note["managerId"], int):
            return self._violation("managerId must be an integer")
        created = {"id": len(self.notes) + 1, **note}
        self.notes.append(created)
        return 201, {"success": True, "id": created["id"]}, {}

    def _upload(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            calls = json.loads(form.get("calls", ""))
        except ValueError:
            return self._violation("calls is not JSON")
        if not isinstance(calls, list) or not calls:
            return self._violation("calls must be a non-empty JSON array")
        if len(calls) > 50:
            return self._violation(f"{len(calls)} calls in one upload (limit 50)")
        errors: dict[str, str] = {}
        for index, call in enumerate(calls):
            problem = self._call_problem(call)
            if problem:
                return self._violation(f"calls[{index}]: {problem}")
            if call["phone"] in self.reject_phones:
                errors[f"calls[{index}][phone]"] = "Phone is not valid"
        if errors:
            return 400, {"success": False, "errorMsg": "Calls are not loaded", "errors": errors}, {}
        duplicates = []
        for call in calls:
            external_id = call["externalId"]
            self.received[external_id] = self.received.get(external_id, 0) + 1
            if external_id in self.calls:
                duplicates.append(external_id)
            else:
                self.calls[external_id] = call
        self.uploads.append(calls)
        return (
            200,
            {"success": True, "processedCallsCount": len(calls) - len(duplicates), "duplicateCalls": duplicates},
            {},
        )

    @staticmethod
    def _call_problem(call: Any) -> str | None:
        if not isinstance(call, dict):
            return "not an object"
        unknown = set(call) - CALL_FIELDS
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        if not isinstance(call.get("date"), str) or not DATE.match(call["date"]):
            return f"date {call.get('date')!r} is not Y-m-d H:i:s"
        if call.get("type") not in ("in", "out"):
            return f"type {call.get('type')!r}"
        if not isinstance(call.get("phone"), str) or not call["phone"]:
            return "phone missing"
        if call.get("result") not in RESULTS:
            return f"result {call.get('result')!r}"
        if not isinstance(call.get("duration"), int) or call["duration"] < 0:
            return "duration must be a non-negative integer"
        if "durationWaiting" in call and (not isinstance(call["durationWaiting"], int) or call["durationWaiting"] < 0):
            return "durationWaiting must be a non-negative integer"
        if not isinstance(call.get("externalId"), str) or not call["externalId"]:
            return "externalId missing"
        if "userId" in call and not isinstance(call["userId"], int):
            return "userId must be an integer"
        if "code" in call and not isinstance(call["code"], str):
            return "code must be a string"
        if "recordUrl" in call and not str(call["recordUrl"]).startswith(("http://", "https://")):
            return "recordUrl must be a URL"
        return None

    def _event(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            event = json.loads(form.get("event", ""))
        except ValueError:
            return self._violation("event is not JSON")
        if not isinstance(event, dict):
            return self._violation("event must be a JSON object")
        unknown = set(event) - EVENT_FIELDS
        if unknown:
            return self._violation(f"event: unknown fields {sorted(unknown)}")
        if event.get("type") not in ("in", "out", "hangup"):
            return self._violation(f"event type {event.get('type')!r}")
        if not isinstance(event.get("phone"), str) or not event["phone"]:
            return self._violation("event phone missing")
        codes = event.get("codes", [])
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return self._violation("codes must be an array of strings")
        if "hangupStatus" in event and event["hangupStatus"] not in HANGUP_STATUSES:
            return self._violation(f"hangupStatus {event['hangupStatus']!r}")
        self.events.append(event)
        return 200, {"success": True}, {}
