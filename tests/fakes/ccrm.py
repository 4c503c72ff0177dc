"""Fake ccrm.pl public API (docs/protocols/ccrm.md): callHistory (paged by 1000, mandatory date range with
%20-encoded spaces, Bearer auth, an optional one-off 403 "request limit") and notes."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PAGE_SIZE = 1000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}%20\d{2}:\d{2}:\d{2}$")
UNAUTHORIZED = {"success": False, "message": "Unauthorized"}
LIMIT = {"success": False, "message": "Request limit has been exceeded"}

# The vendor documentation's notes answer as printed: not valid JSON (unescaped quotes in `text`, a trailing comma).
SEED_NOTES_BODY = (
    b'{"success":true,"data":[{"text":"{"blocks":[{"key":"be2bp","text":"Notatka do tego po\xc5\x82\xc4\x85czenia",'
    b'"type":"unstyled","depth":0,"inlineStyleRanges":[],"entityRanges":[],"data":{}}],"entityMap":{}}",'
    b'"created":"2022-12-29 12:13:35","uuid":"1fa7bda9-e853-43d6-9b3c-c194ad59cefd","user":{"firstName":"Jan",'
    b'"lastName":"Kowalski","uuid":"a26b956b-ce46-48f4-a1bd-b657136d4148"},"status":"exist","call":{"uuid":'
    b'"e4baaa94-095a-41b3-b638-203dcfcfd3fe","callDate":"2022-12-29 10:24:57","callDirection":"IN","service":"CALL",'
    b'"externalNumber":{"numberNotFormatted":48777888999,"numberFormatted":"+48 777 888 999"}},"organisation":null,'
    b'"person":null,"pin":0,"files":{},"edit":1,}],"otherData":{"totalCount":1},"message":"OK"}'
)

# The vendor documentation's example record (callHistory).
SEED_RECORD: dict[str, Any] = {
    "to": {"type": "unknown", "number": "+48 777 888 999", "numberNotFormatted": 48777888999},
    "from": {"type": "unknown", "number": "+48 555 555 555", "numberNotFormatted": 48555555555},
    "userTalk": {
        "status": "queue",
        "receivers": [
            {
                "internal": 107,
                "uuid": "fdf75d0c-fc9f-41dc-9a54-af2121db989b",
                "firstName": "Jan",
                "lastName": "Kowalski",
            }
        ],
    },
    "uuid": "e4baaa94-095a-41b3-b638-203dcfcfd3fe",
    "callDirection": "IN",
    "callDate": "2022-12-29 11:24:57",
    "duration": 368,
    "destination": "Połączenie Przychodzące",
    "cost": 0,
    "service": "CALL",
    "smsData": None,
    "note": 1,
    "externalNumber": {"numberNotFormatted": 48333333333, "numberFormatted": "+48 333 333 333", "type": "unknown"},
    "flags": [
        {
            "name": "Billing",
            "uuid": "62bd7385-c4ba-46f5-94b5-2fae4ebc87d4",
            "color": "#fa702e",
            "reluuid": "9fb11e8a-099e-4ea8-8f17-fdf095f06637",
        }
    ],
    "status": "ANSWERED",
}


def record(uuid: str, call_date: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "to": {"type": "unknown", "number": "+48 777 888 999", "numberNotFormatted": 48777888999},
        "from": {"type": "unknown", "number": "+48 501 234 567", "numberNotFormatted": 48501234567},
        "userTalk": {"status": "noQueue", "receivers": [{"internal": 107}]},
        "uuid": uuid,
        "callDirection": "in",
        "callDate": call_date,
        "duration": 30,
        "service": "CALL",
        "smsData": None,
        "note": 0,
        "externalNumber": {"numberNotFormatted": 48501234567, "numberFormatted": "+48 501 234 567"},
        "flags": [],
        "status": "answered",
    }
    base.update(overrides)
    return base


@dataclass
class FakeCcrm:
    api_key: str
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # uuid -> list of notes, or raw bytes
    fail_once: set[int] = field(default_factory=set)  # pages answered 403 "request limit" once
    broken_once: set[int] = field(default_factory=set)  # pages answered 500 once
    page_size: int = PAGE_SIZE
    after_page: Callable[[int], None] | None = None  # runs after a page is served (arrivals)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add(self, *records: dict[str, Any]) -> None:
        with self._lock:
            self.records.extend(records)

    def handle(
        self, path: str, query: dict[str, str], headers: dict[str, str], raw_query: str = ""
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append((path, dict(query)))
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return 401, UNAUTHORIZED, {}
        if path == "/publicApi/callHistory":
            return self._history(query, raw_query)
        if path == "/publicApi/notes":
            if not query.get("callHistory"):
                self.errors.append("notes without callHistory")
                return 400, {"success": False, "message": "callHistory is required"}, {}
            notes = self.notes.get(query["callHistory"], [])
            if isinstance(notes, bytes):
                return 200, notes, {}
            return 200, {"success": True, "data": notes, "otherData": {"totalCount": len(notes)}, "message": "OK"}, {}
        return 404, {"success": False, "message": "Not found"}, {}

    def _history(self, query: dict[str, str], raw_query: str) -> tuple[int, Any, dict[str, str]]:
        raw = dict(part.split("=", 1) for part in raw_query.split("&") if "=" in part)
        for name in ("dateFrom", "dateTo"):
            if not _DATE.match(raw.get(name, "")):
                self.errors.append(f"{name} missing or not YYYY-MM-DD%20HH:MM:SS: {raw.get(name)!r}")
                return 400, {"success": False, "message": f"{name} is required"}, {}
        page = int(query.get("page") or 1)
        with self._lock:
            if page in self.fail_once:
                self.fail_once.discard(page)
                return 403, LIMIT, {}
            if page in self.broken_once:
                self.broken_once.discard(page)
                return 500, {"success": False, "message": "Internal error"}, {}
            chosen = sorted(
                (r for r in self.records if query["dateFrom"] <= str(r["callDate"]) <= query["dateTo"]),
                key=lambda r: (str(r["callDate"]), str(r["uuid"])),
            )
            data = chosen[(page - 1) * self.page_size : page * self.page_size]
            body = {"success": True, "data": data, "otherData": {"totalCount": len(chosen)}, "message": "OK"}
        if self.after_page is not None:
            self.after_page(page)
        return 200, body, {}

    def pages_served(self) -> list[int]:
        return [int(q.get("page") or 1) for p, q in self.requests if p == "/publicApi/callHistory"]
