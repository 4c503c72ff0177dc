"""ccrm.pl public API client (docs/ccrm.md): `GET /publicApi/callHistory` (paged, mandatory date
range) and `GET /publicApi/notes?callHistory={uuid}`, with `Authorization: Bearer <API key>`.

The request limit is unpublished: a 403 "Request limit has been exceeded" (or a 429) is a
RateLimited error the poller answers by backing off and resuming at the same page. Error texts carry
the endpoint and status only, never the key.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from callbridge.infra.http import HttpError, HttpPeer, RetryPolicy, TransientHttpError
from callbridge.pbx.base import PbxFailure

PAGE_SIZE = 1000
DEFAULT_TIMEOUT_S = 30.0
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# httpx logs every request URL at INFO ("HTTP Request: GET …"): our URLs may carry a key.
logging.getLogger("httpx").setLevel(logging.WARNING)


class CcrmError(PbxFailure):
    def __init__(self, endpoint: str, reason: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(f"ccrm.pl {endpoint}: {reason}")
        self.endpoint = endpoint
        self.status = status
        self.transient = transient


class RateLimited(CcrmError):
    def __init__(self, endpoint: str, status: int, retry_after: float | None) -> None:
        super().__init__(endpoint, f"request limit exceeded (HTTP {status})", status=status, transient=True)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total_count: int | None


def _date(value: datetime) -> str:
    # The space must be %20 (the documentation), not '+': quote, not urlencode.
    return quote(value.strftime(DATE_FORMAT), safe=":-")


def _failure(endpoint: str, error: HttpError) -> CcrmError:
    """The peer's error as this API's: a request limit (429, or the documented 403 "Request limit has
    been exceeded") is RateLimited; the text names the endpoint and status, never the key."""
    if error.status == 429 or (error.status == 403 and "limit" in error.body.lower()):
        retry_after = error.retry_after if isinstance(error, TransientHttpError) else None
        return RateLimited(endpoint, error.status, retry_after)
    if isinstance(error, TransientHttpError):
        reason = "timed out" if error.status is None and error.reason == "timeout" else error.reason
        return CcrmError(endpoint, reason, status=error.status, transient=True)
    # No status: the address guard refused the API's address before anything was sent.
    return CcrmError(endpoint, error.reason if error.status is None else f"HTTP {error.status}", status=error.status)


@dataclass
class CcrmApi:
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    # The account's trusted host:ports (PbxSettings.trusted_hosts): its API may sit on a private address.
    trusted_hosts: frozenset[str] = frozenset()

    def _get(self, endpoint: str, query: str) -> Any:
        # The one place this client touches the network: the shared peer client (infra.http), so the
        # address guard, timeouts and secret masking are those of every other peer. Tried once: the
        # importer owns waiting (a request limit is backed off there, `_with_backoff`; any other
        # transient failure ends the run, and the next one resumes at the same page).
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        peer = HttpPeer(
            "ccrm",
            self.base_url,
            headers=headers,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(attempts=1),
            transport=self.transport,  # a test's MockTransport; otherwise the address guard
            secrets=(self.api_key,),
            trusted_hosts=self.trusted_hosts,
        )
        try:
            with peer:
                # The query is written out (the dates' %20), not handed to httpx to encode.
                response = peer.request("GET", f"publicApi/{endpoint}?{query}")
        except HttpError as error:
            raise _failure(endpoint, error) from None
        return parse_json(response.text, endpoint)

    def call_history(self, date_from: datetime, date_to: datetime, page: int = 1) -> Page:
        """One page (≤ 1000 records) of the history between two local (account time zone) times."""
        query = f"dateFrom={_date(date_from)}&dateTo={_date(date_to)}&page={page}"
        body = self._get("callHistory", query)
        if not isinstance(body, dict) or body.get("success") is False:
            raise CcrmError("callHistory", "unsuccessful answer")
        records = body.get("data") or []
        total = (body.get("otherData") or {}).get("totalCount")
        return Page(
            records=[r for r in records if isinstance(r, dict)] if isinstance(records, list) else [],
            total_count=int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
        )

    def notes(self, call_uuid: str) -> list[dict[str, Any]]:
        body = self._get("notes", f"callHistory={quote(call_uuid, safe='')}")
        data = body.get("data") if isinstance(body, dict) else None
        return [n for n in data if isinstance(n, dict)] if isinstance(data, list) else []


_NOTE_TEXT = re.compile(r'"text"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"type"')


# The editor document pasted unescaped into a note's `text`, up to the field that follows it.
_RAW_DOCUMENT = re.compile(r'("text"\s*:\s*)"(\{.*?\})"(\s*,\s*"created")', re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _repaired(text: str) -> Any:
    """The documentation's broken notes answer made JSON: each `text` document escaped, trailing
    commas dropped; so the author and time of each note survive. None when that is not enough."""
    escaped = _RAW_DOCUMENT.sub(lambda m: m.group(1) + json.dumps(m.group(2)) + m.group(3), text)
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", escaped))
    except ValueError:
        return None


def parse_json(text: str, endpoint: str) -> Any:
    """The answer as JSON. The documentation's own notes example is not valid JSON (an editor document
    pasted unescaped into `text`, a trailing comma): for notes, repair that, else fall back to the
    block texts."""
    try:
        return json.loads(text)
    except ValueError:
        if endpoint != "notes":
            raise CcrmError(endpoint, "answer is not JSON") from None
    repaired = _repaired(text)
    if isinstance(repaired, dict):
        return repaired
    blocks = [json.loads(f'"{m}"') for m in _NOTE_TEXT.findall(text)]
    return {
        "success": True,
        "data": [{"text": json.dumps({"blocks": [{"text": b} for b in blocks]}), "status": "exist"}],
    }


def note_plain_text(text: Any) -> str:
    """A note's rich-text document (a JSON string with `blocks[].text`) as plain text, one line per
    block; text that is not such a document is kept as it is."""
    if not isinstance(text, str):
        return ""
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(document, dict) and isinstance(document.get("blocks"), list):
        return "\n".join(str(b.get("text", "")) for b in document["blocks"] if isinstance(b, dict)).strip()
    return text.strip()
