"""Fake MiniCRM Call log API (docs/protocols/minicrm.md): `POST /Api/CallLog`, validating every request against
the spec, de-duplicating identical records (answered `Exists`) and recording what arrived."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.crm_server import Stall

DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
FIELDS = {"Number", "Duration", "CallType", "Date", "ReferenceId"}


@dataclass
class FakeMiniCrm:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)  # accepted request bodies
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # UserExtension -> saved records
    received: int = 0  # records received, repeats included
    errors: list[str] = field(default_factory=list)  # spec violations seen
    down_status: int | None = None
    stall: Stall = field(default_factory=Stall)
    reject_numbers: set[str] = field(default_factory=set)  # answered as Skipped (unknown number)
    attempts: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _violation(self, message: str) -> tuple[int, Any, dict[str, str]]:
        self.errors.append(message)
        return 400, {"error": message}, {}

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.attempts += 1
        if self.stall.hang():
            return 504, {"error": "gateway timeout"}, {}
        with self._lock:
            if self.down_status is not None:
                return self.down_status, {"error": "down"}, {}
            if (method, path) != ("POST", "/Api/CallLog"):
                return 404, {"error": "not found"}, {}
            if "application/json" not in headers.get("content-type", ""):
                return self._violation("body must be JSON")
            try:
                request = json.loads(body)
            except ValueError:
                return self._violation("body is not JSON")
            if request.get("ApiKey") != self.api_key:
                return 401, {"error": "bad ApiKey"}, {}
            extension = request.get("UserExtension")
            if not isinstance(extension, str) or not extension:
                return self._violation("UserExtension must be a non-empty string")
            data = request.get("Data")
            if not isinstance(data, list) or not data:
                return self._violation("Data must be a non-empty array (we always send an array)")
            if set(request) - {"ApiKey", "UserExtension", "Data"}:
                return self._violation(f"unknown fields {sorted(set(request) - {'ApiKey', 'UserExtension', 'Data'})}")
            counts = {"Skipped": 0, "Processed": 0, "Exists": 0}
            for record in data:
                problem = self._problem(record)
                if problem:
                    return self._violation(problem)
                self.received += 1
                # A number without a digit (`anonymous`) is no contact MiniCRM can file the call
                # under: skipped, as a record without its Number (docs/protocols/minicrm.md).
                if record["Number"] in self.reject_numbers or not any(c.isdigit() for c in record["Number"]):
                    counts["Skipped"] += 1
                    continue
                identity = json.dumps([extension, record], sort_keys=True)
                if identity in self._seen:
                    counts["Exists"] += 1
                    continue
                self._seen.add(identity)
                self.records.setdefault(extension, []).append(record)
                counts["Processed"] += 1
            self.requests.append(request)
            return 200, counts, {}

    @staticmethod
    def _problem(record: Any) -> str | None:
        if not isinstance(record, dict):
            return "a Data item is not an object"
        if set(record) - FIELDS:
            return f"unknown record fields {sorted(set(record) - FIELDS)}"
        if not isinstance(record.get("Number"), str) or not record["Number"]:
            return "Number must be a non-empty string"
        if not isinstance(record.get("Duration"), int) or record["Duration"] < 0:
            return "Duration must be a non-negative integer"
        if record.get("CallType") not in (0, 1, 2):
            return f"CallType {record.get('CallType')!r} is not 0, 1 or 2"
        if not isinstance(record.get("Date"), str) or not DATE.match(record["Date"]):
            return f"Date {record.get('Date')!r} is not YYYY-MM-DD HH:MM:SS"
        if "ReferenceId" in record and (not isinstance(record["ReferenceId"], str) or not record["ReferenceId"]):
            return "ReferenceId must be a non-empty string"
        return None

    def all_records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(ext, r) for ext, items in self.records.items() for r in items]
