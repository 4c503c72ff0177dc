"""Fake Cloud PBX CRM API (docs/protocols/cloudpbx.md, docs/protocols/cloudpbx.md (vendor §4.2)): `makeCall` and `accounts` at one
address, form POSTs with `token`, validated as the vendor documentation and the field notes describe; records every
request. Serve it with tests.fakes.crm_server.serve."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

PATH = "/sys/crm_api.wcgp"
# The vendor documentation's `accounts` answer, plus the fields live PBXs add.
SEED_ACCOUNTS = [
    {"name": "test", "realName": "Тестовый пользователь"},
    {"name": "daria", "realName": "Иванова Дария", "ext": "102", "email": "daria@example.com"},
    {"name": "andy", "realName": "Петров Андрей", "ext": "100"},
    {"name": "mike", "realName": "Семенов Михаил"},
    {"name": "serg", "realName": "Чижиков Сергей"},
]


@dataclass
class FakeCloudPbx:
    token: str
    accounts: list[dict[str, Any]] = field(default_factory=lambda: [dict(a) for a in SEED_ACCOUNTS])
    requests: list[dict[str, str]] = field(default_factory=list)  # every form received, as sent
    errors: list[str] = field(default_factory=list)  # spec violations seen
    delay_s: float = 0.0  # answer this late (a PBX timing out)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
        form = dict(pairs)
        with self._lock:
            self.requests.append(form)
        if self.delay_s:
            time.sleep(self.delay_s)
        if method != "POST" or path != PATH:
            return 404, {"error": "Not found"}, {}
        if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
            self.errors.append("body is not form-encoded")
            return 400, {"error": "Invalid parameters"}, {}
        if len(pairs) != len(form):
            self.errors.append("a field was sent twice")
            return 400, {"error": "Invalid parameters"}, {}
        if form.get("token") != self.token:
            return 401, {"error": "Invalid token"}, {}
        if form.get("cmd") == "makeCall":
            if set(form) - {"cmd", "phone", "user", "token", "clid"}:
                self.errors.append(f"makeCall with unknown fields {sorted(set(form))}")
                return 400, {"error": "Invalid parameters"}, {}
            if not form.get("phone", "").isdigit() or not form.get("user"):
                self.errors.append(f"makeCall phone must be digits only and user given: {form!r}")
                return 400, {"error": "Invalid parameters"}, {}
            if form["user"] not in {a["name"] for a in self.accounts}:
                return 400, {"error": "Invalid parameters"}, {}
            return 200, {"uuid": f"call-{len(self.requests)}"}, {}
        if form.get("cmd") == "accounts":
            return 200, self.accounts, {}
        return 400, {"error": "Invalid parameters"}, {}

    def calls(self, cmd: str) -> list[dict[str, str]]:
        with self._lock:
            return [r for r in self.requests if r.get("cmd") == cmd]


@dataclass
class FakeManagerCrm:
    """retailCRM's `GET /api/v5/telephony/manager` (docs/protocols/retailcrm.md) with a configurable delay,
    answering like retailCRM: the manager only when free, and the customer."""

    api_key: str
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)  # phone -> {manager, customer}
    delays: dict[str, float] = field(default_factory=dict)  # phone -> seconds before answering
    failing: set[str] = field(default_factory=set)  # phones answered with 503 (the CRM is down)
    asked: list[str] = field(default_factory=list)  # phones asked about
    answered: list[str] = field(default_factory=list)  # phones answered (after any delay)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if headers.get("x-api-key") != self.api_key:
            return 403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'}, {}
        if (method, path) != ("GET", "/api/v5/telephony/manager"):
            return 404, {"success": False, "errorMsg": "Not found"}, {}
        phone = query.get("phone", "")
        if not phone.startswith("+"):
            self.errors.append(f"phone {phone!r} is not E.164")
        with self._lock:
            self.asked.append(phone)
        time.sleep(self.delays.get(phone, 0.0))
        if phone in self.failing:
            return 503, {"success": False, "errorMsg": "Service unavailable"}, {}
        owner = self.owners.get(phone) or {}
        with self._lock:
            self.answered.append(phone)
        return 200, {"success": True, **owner}, {}

    def count(self, phone: str) -> int:
        with self._lock:
            return self.asked.count(phone)
