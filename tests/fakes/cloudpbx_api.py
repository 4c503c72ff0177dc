"""Fake Cloud PBX CRM API (docs/protocols/cloudpbx.md, vendor §4.2 and "Beyond the basic protocol"): `makeCall`,
`accounts` and `history` at one address, form POSTs with `token`, validated as the vendor documentation and the field
notes describe; records every request. Serve it with tests.fakes.crm_server.serve.

`history` answers as the PBX writes it: CSV without a header, comma-separated, UTF-8, one call a line
(`uid,type,client,account,via,start,wait,duration,record`), `type` in|out|missed, `start` in the PBX's
own time zone with its offset (Moscow, +03:00), the calls that started within [start, end] (UTC
`YYYYmmddTHHMMSSZ`, both ends included), oldest first, at most `limit` lines."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
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


PBX_ZONE = timezone(timedelta(hours=3))  # the PBX writes its history in its own zone (Moscow)
_COMPACT = re.compile(r"^\d{8}T\d{6}Z$")
HISTORY_FIELDS = frozenset({"cmd", "token", "period", "start", "end", "type", "limit"})
PERIODS = frozenset({"today", "yesterday", "this_week", "last_week", "this_month", "last_month"})


@dataclass(frozen=True)
class HistoryCall:
    """One call of the PBX's history."""

    uid: str
    type: str  # in | out | missed
    client: str
    account: str
    via: str
    start: datetime  # aware
    wait: int = 0
    duration: int = 0
    record: str = ""

    def line(self) -> str:
        start = self.start.astimezone(PBX_ZONE).isoformat(timespec="seconds")
        fields = [self.uid, self.type, self.client, self.account, self.via, start, str(self.wait), str(self.duration)]
        return ",".join([*fields, self.record])


@dataclass
class FakeCloudPbx:
    token: str
    accounts: list[dict[str, Any]] = field(default_factory=lambda: [dict(a) for a in SEED_ACCOUNTS])
    requests: list[dict[str, str]] = field(default_factory=list)  # every form received, as sent
    errors: list[str] = field(default_factory=list)  # spec violations seen
    delay_s: float = 0.0  # answer this late (a PBX timing out)
    history: list[HistoryCall] = field(default_factory=list)
    junk_lines: list[str] = field(default_factory=list)  # malformed lines written into every history answer
    fail_history_after: int | None = None  # history answers served before the PBX starts failing (503)
    fail_history_times: int = 0  # how many history requests then fail
    history_served: int = 0
    # makeCall answers with no call id (an empty 200), a form docs/protocols/cloudpbx.md documents:
    # always, or for the numbers (digits, as makeCall sends them) of this set
    make_call_without_id: bool = False
    make_call_without_id_to: set[str] = field(default_factory=set)
    placed: int = 0  # calls makeCall accepted (their uuids are call-1, call-2, ...)
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
            if self.make_call_without_id or form["phone"] in self.make_call_without_id_to:
                return 200, b"", {}
            with self._lock:  # one uuid per call, also when clicks arrive at once
                self.placed += 1
                return 200, {"uuid": f"call-{self.placed}"}, {}
        if form.get("cmd") == "accounts":
            return 200, self.accounts, {}
        if form.get("cmd") == "history":
            return self._history(form)
        return 400, {"error": "Invalid parameters"}, {}

    def _history(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        unknown = set(form) - HISTORY_FIELDS
        period, start, end = form.get("period"), form.get("start"), form.get("end")
        problems = []
        if unknown:
            problems.append(f"unknown fields {sorted(unknown)}")
        if period is not None and (period not in PERIODS or start or end):
            problems.append(f"period {period!r} with start/end {start!r}/{end!r}")
        if period is None and not (start and end and _COMPACT.match(start) and _COMPACT.match(end)):
            problems.append(f"start/end not UTC YYYYmmddTHHMMSSZ: {start!r}, {end!r}")
        if form.get("type", "all") not in {"all", "in", "out", "missed"}:
            problems.append(f"type {form.get('type')!r}")
        if not form.get("limit", "1").isdigit() or int(form.get("limit", "1")) < 1:
            problems.append(f"limit {form.get('limit')!r}")
        if problems:
            with self._lock:
                self.errors.extend(problems)
            return 400, b"Invalid parameters: " + ", ".join(problems).encode(), {"content-type": "text/plain"}
        with self._lock:
            failing = self.fail_history_after is not None and self.history_served >= self.fail_history_after
            if failing and self.fail_history_times > 0:
                self.fail_history_times -= 1
                return 503, b"Service Unavailable", {"content-type": "text/plain"}
            self.history_served += 1
        if period is not None:
            return 200, b"", {"content-type": "text/csv; charset=utf-8"}  # periods are not used by the tests
        lo = datetime.strptime(str(start), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        hi = datetime.strptime(str(end), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        kind = form.get("type", "all")
        chosen = sorted(
            (c for c in self.history if lo <= c.start <= hi and kind in ("all", c.type)), key=lambda c: c.start
        )
        lines = [c.line() for c in chosen[: int(form.get("limit", "100"))]]
        lines[1:1] = self.junk_lines  # the PBX's bad line sits among good ones
        text = "".join(line + "\n" for line in lines)
        return 200, text.encode("utf-8"), {"content-type": "text/csv; charset=utf-8"}

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
