"""Fake Zadarma (Novofon) REST API v1 on 127.0.0.1 (docs/protocols/zadarma.md), strict:

- every request must carry `Authorization: <key>:<signature>`, the signature recomputed here as the
  vendor's clients compute it (sorted RFC 1738 query, method path, md5, hex HMAC-SHA1, base64);
- `/v1/statistics/pbx/` pages with `skip`/`limit` (≤ 1000), filters by `start`/`end` (local times);
- `/v1/pbx/record/request/` answers a temporary link that expires after `link_ttl_s`;
- `/v1/request/callback/`, `/v1/pbx/internal/`;
- the rate limits: `per_window` requests, `statistics_per_window` statistics requests in every
  `window_s` (a 429 with Retry-After beyond).

It also signs notifications the way Zadarma does (`notification`), for the tests that send them.
Written from the protocol notes, independently of the adapter's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

AUDIO = b"ID3" + b"\x03" * 2048
_SIGNED = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}


def _sign(secret: str, text: str) -> str:
    # PHP: base64_encode(hash_hmac('sha1', $text, $secret)) - hash_hmac answers hex.
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest().encode()).decode()


def notification(secret: str, event: str, **fields: str) -> tuple[dict[str, str], str]:
    """A notification's form fields and its `Signature` header, as Zadarma sends them."""
    body = {"event": event, **fields}
    return body, _sign(secret, "".join(body.get(name, "") for name in _SIGNED[event]))


@dataclass
class FakeZadarma:
    key: str
    secret: str
    stats: list[dict[str, Any]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=lambda: [100, 101, 102])
    recordings: dict[str, bytes] = field(default_factory=dict)  # call_id (recording id) -> audio
    link_ttl_s: float = 1800.0
    window_s: float = 60.0
    per_window: int = 100
    statistics_per_window: int = 3
    retry_after_s: int = 20
    callbacks: list[dict[str, str]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # protocol violations seen
    monotonic: Callable[[], float] = time.monotonic
    base_url: str = ""  # set by the test once served: where download links point
    _links: dict[str, tuple[str, float]] = field(default_factory=dict)
    _seen: list[tuple[float, bool]] = field(default_factory=list)
    links_issued: list[str] = field(default_factory=list)  # recording ids, once per link given out
    expired_downloads: list[str] = field(default_factory=list)  # recording ids whose link had expired
    _tokens: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the server's side ----------------------------------------------------------------------
    def handle(
        self, path: str, query: dict[str, str], headers: dict[str, str], raw_query: str = ""
    ) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/v1/pbx/record/download/"):
            return self._download(path)
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        with self._lock:
            self.requests.append((path, params))
        if not path.startswith("/v1/") or not path.endswith("/"):
            self.errors.append(f"method path without the version or the trailing slash: {path}")
            return 404, {"status": "error", "message": "Method not found"}, {}
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        key, _, signature = auth.partition(":")
        query_text = urlencode(sorted(params.items()))
        expected = _sign(self.secret, path + query_text + hashlib.md5(query_text.encode()).hexdigest())
        if key != self.key or not hmac.compare_digest(signature.encode(), expected.encode()):
            self.errors.append(f"{path}: wrong key or signature")
            return 401, {"status": "error", "message": "Not authorized"}, {}
        limited = self._limited(path.startswith("/v1/statistics/"))
        if limited:
            return 429, {"status": "error", "message": "Too many requests"}, {"Retry-After": str(self.retry_after_s)}
        if path == "/v1/statistics/pbx/":
            return self._statistics(params)
        if path == "/v1/pbx/record/request/":
            return self._record_request(params)
        if path == "/v1/request/callback/":
            if not params.get("from") or not params.get("to", "").isdigit():
                self.errors.append(f"callback without from or a numeric to: {params}")
                return 400, {"status": "error", "message": "Wrong parameters"}, {}
            with self._lock:
                self.callbacks.append(params)
            return 200, {"status": "success", "from": params["from"], "to": params["to"], "time": 1714550000}, {}
        if path == "/v1/pbx/internal/":
            return 200, {"status": "success", "pbx_id": 1234, "numbers": self.numbers}, {}
        return 404, {"status": "error", "message": "Method not found"}, {}

    def _limited(self, statistics: bool) -> bool:
        now = self.monotonic()
        with self._lock:
            self._seen = [(t, s) for t, s in self._seen if now - t < self.window_s]
            general = len(self._seen)
            stats = sum(1 for _, s in self._seen if s)
            if general >= self.per_window or (statistics and stats >= self.statistics_per_window):
                return True
            self._seen.append((now, statistics))
        return False

    def _statistics(self, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if params.get("version") != "2" or not params.get("start") or not params.get("end"):
            self.errors.append(f"statistics without start, end or version=2: {sorted(params)}")
            return 400, {"status": "error", "message": "Wrong parameters"}, {}
        limit = int(params.get("limit") or 1000)
        if not 1 <= limit <= 1000:
            self.errors.append(f"statistics limit {limit}")
            return 400, {"status": "error", "message": "Wrong limit"}, {}
        skip = int(params.get("skip") or 0)
        chosen = [r for r in self.stats if params["start"] <= r["callstart"] <= params["end"]]
        chosen.sort(key=lambda r: (r["callstart"], str(r["pbx_call_id"]), str(r.get("call_id"))))
        page = chosen[skip : skip + limit]
        return (
            200,
            {"status": "success", "start": params["start"], "end": params["end"], "version": 2, "stats": page},
            {},
        )

    def _record_request(self, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        call_id, pbx_call_id = params.get("call_id"), params.get("pbx_call_id")
        if not call_id and not pbx_call_id:
            self.errors.append("record request without call_id or pbx_call_id")
            return 400, {"status": "error", "message": "call_id or pbx_call_id required"}, {}
        ids = (
            [call_id]
            if call_id
            else [r["call_id"] for r in self.stats if r["pbx_call_id"] == pbx_call_id and r.get("call_id")]
        )
        ids = [i for i in ids if i in self.recordings]
        if not ids:
            return 404, {"status": "error", "message": "File not found"}, {}
        links = []
        for rec in ids:
            token = f"t{next(self._tokens)}"
            with self._lock:
                self._links[token] = (rec, self.monotonic() + self.link_ttl_s)
                self.links_issued.append(rec)
            links.append(f"{self.base_url}/v1/pbx/record/download/{token}/{rec}.mp3")
        if call_id:
            return 200, {"status": "success", "link": links[0], "lifetime_till": "2024-05-01 12:30:00"}, {}
        return 200, {"status": "success", "links": links, "lifetime_till": "2024-05-01 12:30:00"}, {}

    def _download(self, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/")
        token = parts[5] if len(parts) > 6 else ""
        found = self._links.get(token)
        if found is None or found[1] < self.monotonic():
            with self._lock:
                self.expired_downloads.append(parts[-1].removesuffix(".mp3"))
            return 404, {"status": "error", "message": "Link expired"}, {}
        return 200, self.recordings[found[0]], {"content-type": "audio/mpeg"}

    # -- the test's side ------------------------------------------------------------------------
    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def expire_links(self) -> None:
        with self._lock:
            self._links = {t: (rec, 0.0) for t, (rec, _) in self._links.items()}
