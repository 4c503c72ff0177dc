"""Fake telediscount API (docs/protocols/telediscount.md): outcome, get_calls, get_record under /api.php/telephony."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

PREFIX = "/api.php/telephony/"
AUDIO = b"ID3" + b"\x00" * 1024


@dataclass
class FakeTelediscount:
    api_key: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # spec violations seen
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
            return 200, {"result": "ok"}, {}
        if method == "get_calls":
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
