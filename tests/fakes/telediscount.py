"""Fake telediscount API (docs/protocols/telediscount.md): outcome, get_calls, get_record under /api.php/telephony."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

PREFIX = "/api.php/telephony/"
AUDIO = b"ID3" + b"\x00" * 1024
GET_CALLS_FILTERS = ("api_call_id", "num_a", "num_m", "num_b")  # the documented optional filters


@dataclass
class FakeTelediscount:
    api_key: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # spec violations seen
    outcome_call_id: str | None = None  # the api_call_id an accepted `outcome` answers, if any
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, path: str, query: dict[str, str], headers: dict[str, str], raw_query: str = ""
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append((path, dict(query)))
        if not path.startswith(PREFIX):
            return 404, {"error": "not found"}, {}
        if query.get("abonent_api_key") != self.api_key:
            return 403, {"error": "bad key"}, {}
        method = path[len(PREFIX) :]
        if method == "outcome":
            if not query.get("num_a") or not query.get("num_b"):
                self.errors.append("outcome without num_a/num_b")
                return 400, {"error": "num_a and num_b required"}, {}
            answer = {"result": "ok"}
            if self.outcome_call_id:
                answer["api_call_id"] = self.outcome_call_id
            return 200, answer, {}
        if method == "get_calls":
            unknown = set(query) - {"abonent_api_key", *GET_CALLS_FILTERS}
            if unknown:
                self.errors.append(f"get_calls with undocumented parameters {sorted(unknown)}")
                return 400, {"error": "unknown parameters"}, {}
            records = [
                c for c in self.calls if all(str(c.get(k)) == v for k, v in query.items() if k != "abonent_api_key")
            ]
            return 200, records, {}
        if method == "get_record":
            call_id = query.get("api_call_id", "")
            if not any(c.get("api_call_id") == call_id for c in self.calls):
                return 404, {"error": "no such call"}, {}
            return 200, AUDIO, {"content-type": "audio/mpeg"}
        return 404, {"error": "unknown method"}, {}

    def count(self, method: str) -> int:
        return sum(1 for path, _ in self.requests if path == PREFIX + method)

    def get_calls_asked(self) -> list[dict[str, str]]:
        """The filters of each get_calls request, in order ({} for the whole list)."""
        return [
            {k: v for k, v in query.items() if k != "abonent_api_key"}
            for path, query in self.requests
            if path == PREFIX + "get_calls"
        ]
