"""Zadarma's notifications and API signatures (docs/protocols/zadarma.md). Pure functions, no I/O,
light imports: the webhook module loads this on the call-start path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlencode

KIND = "zadarma"

START = "NOTIFY_START"
INTERNAL = "NOTIFY_INTERNAL"
ANSWER = "NOTIFY_ANSWER"
END = "NOTIFY_END"
OUT_START = "NOTIFY_OUT_START"
OUT_END = "NOTIFY_OUT_END"
RECORD = "NOTIFY_RECORD"
ECHO = "zd_echo"  # the cabinet's check of the address (a GET), not an event

# The fields whose concatenation each event's signature covers, in order.
SIGNED: dict[str, tuple[str, ...]] = {
    START: ("caller_id", "called_did", "call_start"),
    INTERNAL: ("caller_id", "called_did", "call_start"),
    ANSWER: ("caller_id", "destination", "call_start"),
    END: ("caller_id", "called_did", "call_start"),
    OUT_START: ("internal", "destination", "call_start"),
    OUT_END: ("internal", "destination", "call_start"),
    RECORD: ("pbx_call_id", "call_id_with_rec"),
}
EVENTS = frozenset(SIGNED)

_CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# What the cabinet's zd_echo carries: we echo only a short token, never arbitrary text.
_ECHO = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def hex_hmac_b64(secret: str, text: str) -> str:
    """base64 of the *hex* HMAC-SHA1: what both official clients compute (PHP's hash_hmac answers
    hex by default), for our API requests and for the PBX's notifications alike."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def signed_string(event: str, fields: Mapping[str, str]) -> str:
    return "".join(fields.get(name, "") for name in SIGNED[event])


def notification_signature(secret: str, event: str, fields: Mapping[str, str]) -> str:
    return hex_hmac_b64(secret, signed_string(event, fields))


def signature_ok(secret: str, event: str, fields: Mapping[str, str], presented: str) -> bool:
    """Constant-time check of a notification's `Signature` header; False for an empty one."""
    if not presented or not secret or event not in SIGNED:
        return False
    expected = notification_signature(secret, event, fields)
    return hmac.compare_digest(expected.encode(), presented.strip().encode())


def query_string(params: Mapping[str, str]) -> str:
    """The parameters sorted by name, as PHP's http_build_query(…, PHP_QUERY_RFC1738) writes them
    (spaces as `+`): the string the API signs and the query a GET sends."""
    return urlencode(sorted((k, str(v)) for k, v in params.items()))


def api_signature(secret: str, method_path: str, params: Mapping[str, str]) -> str:
    """The Authorization signature of one API request: `method_path` with the version and the
    trailing slash (`/v1/statistics/pbx/`), the parameters as they are sent (`format` included)."""
    query = query_string(params)
    # md5 here is the vendor's choice of a checksum inside the signed string, not our security.
    return hex_hmac_b64(secret, method_path + query + hashlib.md5(query.encode(), usedforsecurity=False).hexdigest())


def call_id_ok(value: str) -> bool:
    return bool(_CALL_ID.match(value))


def echo_ok(value: str) -> bool:
    return bool(_ECHO.match(value))
