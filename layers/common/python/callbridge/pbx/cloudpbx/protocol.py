"""Cloud PBX wire format, receiving side (docs/cloudpbx.md): body decoding, field validation and
the exact error bodies the PBX expects, and the `contact` command. Pure functions; no I/O.

The contact path imports this module and nothing of the other commands: the call notifications
(history, event, rating) are in pbx/cloudpbx/notifications.py and the history CSV we read from the
PBX in pbx/cloudpbx/history_csv.py, so that a ringing phone's cold start does not build their
classes (bench/benchmark.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import NamedTuple
from urllib.parse import parse_qsl

from callbridge.core.webhooks import WebhookAnswer, WebhookRefused

KIND = "cloudpbx"  # the account file's pbx.kind, callbridge.registry
MAX_FIELDS = 100
MAX_VALUE = 2048
MAX_DURATION = 10 * 24 * 3600  # no call lasts or rings longer


class CloudPbxError(WebhookRefused):
    """A refusal with the exact body the PBX expects (docs/cloudpbx.md, "Answers")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(WebhookAnswer(status, {"error": message}))
        self.args = (message,)
        self.status = status
        self.body = {"error": message}


def invalid_parameters() -> CloudPbxError:
    return CloudPbxError(400, "Invalid parameters")


def invalid_token() -> CloudPbxError:
    return CloudPbxError(401, "Invalid token")


def decode_body(body: str | None, is_base64: bool, content_type: str) -> dict[str, str]:
    """Form-encoded (the documentation's format) or JSON with the same fields. Scalars become strings, the
    first value of a repeated form field wins, anything else is a 400."""
    if not body:
        return {}
    raw: str | bytes = body
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_parameters() from None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_parameters() from None
    text = raw.strip()
    ctype = content_type.lower()
    if "json" in ctype or (not ctype.startswith("application/x-www-form-urlencoded") and text.startswith("{")):
        return _from_json(text)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise invalid_parameters() from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key.strip(), value)
    return fields


def _from_json(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
        # JSON may escape a lone surrogate (`"\ud800"`): no UTF-8 text holds one, so nothing could
        # store it. The PBX's mistake, answered 400 like any other (a 5xx would be retried for ever).
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise invalid_parameters() from None
    if not isinstance(data, dict) or len(data) > MAX_FIELDS:
        raise invalid_parameters()
    fields: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            fields[key] = "1" if value else "0"
        elif isinstance(value, str | int | float):
            fields[key] = str(value)
        elif value is not None:
            raise invalid_parameters()
    return fields


def field_text(fields: dict[str, str], name: str, *, required: bool, limit: int = MAX_VALUE) -> str | None:
    value = fields.get(name)
    value = value.strip() if value is not None else ""
    if not value:
        if required:
            raise invalid_parameters()
        return None
    if len(value) > limit or "\x00" in value:
        raise invalid_parameters()
    return value


class ContactIn(NamedTuple):
    phone: str
    callid: str
    diversion: str | None = None


def parse_contact(fields: dict[str, str]) -> ContactIn:
    """`phone` must be sent but may be empty (a withheld caller id): the answer is then `{}`, the
    PBX routes by its own rules (docs/cloudpbx.md, "Answers")."""
    if "phone" not in fields:
        raise invalid_parameters()
    return ContactIn(
        phone=field_text(fields, "phone", required=False, limit=64) or "",
        callid=required_text(fields, "callid", limit=256),
        diversion=field_text(fields, "diversion", required=False, limit=64),
    )


def required_text(fields: dict[str, str], name: str, limit: int = 256) -> str:
    value = field_text(fields, name, required=True, limit=limit)
    assert value is not None
    return value
