"""Fake retailCRM API v5 (docs/protocols/retailcrm.md): telephony calls/upload, call/event, manager,
integration-modules, customers (search, get by externalId, create, edit), customer notes (list,
create) and tasks (list, create, edit), validating every request against the spec and recording what
arrived. `fail_after_save` answers the next N requests of an endpoint with a 500 after it saved them
(the fault exactly-once must survive); a call uploaded again is not kept twice (retailCRM answers it
in `duplicateCalls`)."""

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
LIMITS = {"20", "50", "100"}
TASK_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
TASK_FIELDS = {"text", "commentary", "datetime", "performerId", "customer", "order", "phone", "phoneSite", "complete"}
CUSTOMER_FIELDS = {
    "externalId", "firstName", "lastName", "patronymic", "email", "phones", "managerId", "site", "source", "vip",
}  # fmt: skip
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
    notes: list[dict[str, Any]] = field(default_factory=list)  # customer notes created: {id, customerId, text…}
    errors: list[str] = field(default_factory=list)  # spec violations seen
    requests: int = 0
    down_status: int | None = None  # answer this status to everything while set
    stall: Stall = field(default_factory=Stall)
    reject_phones: set[str] = field(default_factory=set)  # calls with these phones are refused (400)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> customer
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> task (as created, then edited)
    task_edits: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # "tasks/create" | "customers/create" | "tasks/edit" | "telephony/calls/upload" -> how many of the
    # next ones fail after saving
    fail_after_save: dict[str, int] = field(default_factory=dict)
    lost_uploads: list[list[str]] = field(default_factory=list)  # externalIds of uploads saved, answered 500
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _saved_then_failed(self, endpoint: str) -> bool:
        left = self.fail_after_save.get(endpoint, 0)
        if left <= 0:
            return False
        self.fail_after_save[endpoint] = left - 1
        return True

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
            if (method, path) == ("GET", "/api/v5/customers/notes"):
                wanted = query.get("filter[customerIds][]", "")
                text = query.get("filter[text]", "")
                found = [n for n in self.notes if str(n["customer"]["id"]) == wanted and text in n["text"]]
                return 200, {"success": True, "notes": found}, {}
            if (method, path) == ("POST", "/api/v5/customers/notes/create"):
                return self._note(form)
            answer = self._customers_and_tasks(method, path, query, form)
            if answer is not None:
                return answer
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
        known = set(self.customers)
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
        if self._saved_then_failed("telephony/calls/upload"):
            self.lost_uploads.append([call["externalId"] for call in calls])
            return 500, {"success": False, "errorMsg": "Internal error"}, {}
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

    # -- customers and tasks ---------------------------------------------------------------------
    def _customers_and_tasks(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]] | None:
        if (method, path) == ("GET", "/api/v5/customers"):
            if query.get("limit", "20") not in LIMITS:
                return self._violation(f"limit {query.get('limit')!r} is not one of 20, 50, 100")
            wanted = query.get("filter[name]", "")
            found = [c for c in self.customers.values() if _matches(c, wanted)]
            return 200, {"success": True, "pagination": _page(len(found)), "customers": found}, {}
        if (method, path) == ("POST", "/api/v5/customers/create"):
            return self._create_customer(form)
        match = re.fullmatch(r"/api/v5/customers/([^/]+)/edit", path)
        if match and method == "POST":
            return self._edit_customer(match.group(1), form)
        match = re.fullmatch(r"/api/v5/customers/([^/]+)", path)
        if match and method == "GET":
            if query.get("by") != "externalId":
                return self._violation("we look customers up by externalId: by=externalId")
            customer = next((c for c in self.customers.values() if c.get("externalId") == match.group(1)), None)
            if customer is None:
                return 404, {"success": False, "errorMsg": "Not found"}, {}
            return 200, {"success": True, "customer": customer}, {}
        if (method, path) == ("GET", "/api/v5/tasks"):
            if query.get("limit", "20") not in LIMITS:
                return self._violation(f"limit {query.get('limit')!r} is not one of 20, 50, 100")
            text = query.get("filter[text]", "")
            found = [t for t in self.tasks.values() if text in str(t.get("text", ""))]
            return 200, {"success": True, "pagination": _page(len(found)), "tasks": found}, {}
        if (method, path) == ("POST", "/api/v5/tasks/create"):
            return self._create_task(form)
        match = re.fullmatch(r"/api/v5/tasks/(\d+)/edit", path)
        if match and method == "POST":
            return self._edit_task(int(match.group(1)), form)
        return None

    def _json_field(self, form: dict[str, str], name: str) -> dict[str, Any] | None:
        try:
            value = json.loads(form.get(name, ""))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _create_customer(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        customer = self._json_field(form, "customer")
        if customer is None:
            return self._violation("customer must be a JSON object")
        unknown = set(customer) - CUSTOMER_FIELDS
        if unknown:
            return self._violation(f"customer: unknown fields {sorted(unknown)}")
        phones = customer.get("phones")
        if not isinstance(phones, list) or not all(isinstance(p, dict) and set(p) == {"number"} for p in phones):
            return self._violation("customer phones must be [{number: …}]")
        if "managerId" in customer and not isinstance(customer["managerId"], int):
            return self._violation("managerId must be an integer")
        external_id = customer.get("externalId")
        if any(c.get("externalId") == external_id for c in self.customers.values() if external_id):
            return 400, {"success": False, "errorMsg": "Customer already exists."}, {}
        new_id = len(self.customers) + 1
        self.customers[new_id] = {**customer, "id": new_id}
        if self._saved_then_failed("customers/create"):
            return 500, {"success": False, "errorMsg": "Internal error"}, {}
        return 201, {"success": True, "id": new_id}, {}

    def _edit_customer(self, external_id: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if form.get("by") != "externalId":
            return self._violation("we edit customers by externalId: by=externalId")
        changes = self._json_field(form, "customer")
        if changes is None or set(changes) - CUSTOMER_FIELDS:
            return self._violation("customer must be a JSON object of customer fields")
        if "managerId" in changes and not isinstance(changes["managerId"], int):
            return self._violation("managerId must be an integer")
        customer = next((c for c in self.customers.values() if c.get("externalId") == external_id), None)
        if customer is None:
            return 404, {"success": False, "errorMsg": "Not found"}, {}
        customer.update(changes)
        return 200, {"success": True, "id": customer["id"]}, {}

    def _create_task(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        task = self._json_field(form, "task")
        if task is None:
            return self._violation("task must be a JSON object")
        unknown = set(task) - TASK_FIELDS
        if unknown:
            return self._violation(f"task: unknown fields {sorted(unknown)}")
        if not isinstance(task.get("text"), str) or not task["text"]:
            return self._violation("task text is required")
        if not isinstance(task.get("performerId"), int):
            return self._violation("task performerId must be an integer")
        if "datetime" in task and not TASK_DATETIME.match(str(task["datetime"])):
            return self._violation(f"task datetime {task['datetime']!r} is not Y-m-d H:i")
        customer = task.get("customer")
        if customer is not None and (not isinstance(customer, dict) or customer.get("id") not in self.customers):
            return self._violation("task customer must be {id} of an existing customer")
        new_id = 1000 + len(self.tasks)
        self.tasks[new_id] = {**task, "id": new_id, "complete": False}
        if self._saved_then_failed("tasks/create"):
            return 500, {"success": False, "errorMsg": "Internal error"}, {}
        return 201, {"success": True, "id": new_id}, {}

    def _edit_task(self, task_id: int, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        edit = self._json_field(form, "task")
        if edit is None:
            return self._violation("task must be a JSON object")
        unknown = set(edit) - TASK_FIELDS
        if unknown:
            return self._violation(f"task: unknown fields {sorted(unknown)}")
        if task_id not in self.tasks:
            return 404, {"success": False, "errorMsg": "Task not found"}, {}
        self.tasks[task_id].update(edit)
        self.task_edits.append((task_id, edit))
        if self._saved_then_failed("tasks/edit"):
            return 500, {"success": False, "errorMsg": "Internal error"}, {}
        return 200, {"success": True}, {}


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _matches(customer: dict[str, Any], wanted: str) -> bool:
    """retailCRM's filter[name]: the name, a phone or the e-mail (phones compared by their digits)."""
    if not wanted:
        return True
    digits = _digits(wanted)
    for phone in customer.get("phones") or []:
        if digits and len(digits) >= 7 and _digits(phone.get("number"))[-10:] == digits[-10:]:
            return True
    name = " ".join(str(customer.get(k) or "") for k in ("firstName", "lastName", "email"))
    return wanted.lower() in name.lower()


def _page(count: int) -> dict[str, int]:
    return {"limit": 20, "totalCount": count, "currentPage": 1, "totalPageCount": 1}
