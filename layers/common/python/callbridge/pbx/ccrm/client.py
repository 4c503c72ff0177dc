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

from callbridge.infra.http import guarded_client
from callbridge.infra.netguard import FetchError, PermanentFetchError
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


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@dataclass
class CcrmApi:
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    # The account's trusted host:ports (PbxSettings.trusted_hosts): its API may sit on a private address.
    trusted_hosts: frozenset[str] = frozenset()

    def _get(self, endpoint: str, query: str) -> Any:
        # The one place this client touches the network.
        url = f"{self.base_url.rstrip('/')}/publicApi/{endpoint}?{query}"
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        try:
            # Through the address guard (infra.netguard); `transport` is a test's MockTransport.
            with guarded_client(self.trusted_hosts, timeout_s=self.timeout_s, transport=self.transport) as client:
                response = client.get(url, headers=headers)
        except PermanentFetchError as exc:
            raise CcrmError(endpoint, f"address refused ({exc})") from None
        except FetchError as exc:
            raise CcrmError(endpoint, f"request failed ({exc})", transient=True) from None
        except httpx.TimeoutException:
            raise CcrmError(endpoint, "timed out", transient=True) from None
        except httpx.HTTPError as exc:
            raise CcrmError(endpoint, f"request failed ({type(exc).__name__})", transient=True) from None
        status = response.status_code
        if status == 429 or (status == 403 and b"limit" in response.content.lower()):
            raise RateLimited(endpoint, status, _retry_after(response.headers.get("retry-after")))
        if status >= 500:
            raise CcrmError(endpoint, f"HTTP {status}", status=status, transient=True)
        if status >= 400:
            raise CcrmError(endpoint, f"HTTP {status}", status=status)
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
