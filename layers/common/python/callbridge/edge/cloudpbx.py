"""The Cloud PBX webhook over HTTP: one function for the single address (dispatch on `cmd`) and for
the per-command addresses. It takes the API Gateway HTTP API (v2) event only to read the path
parameter, headers and body, and hands plain values to the core.

Why not Powertools' event handler here: the contact path is latency critical and its cold start is
measured against a bare boto3 handler (bench/benchmark.py) - the resolver's import alone costs about
a third of that floor. The protocol also needs what its validation can't express: form or JSON
bodies with the same fields, dispatch on a body field, and 401 before 400 with fixed bodies.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from callbridge.core.accounts import Account, UnknownAccount, authenticate
from callbridge.core.phones import known_e164, normalize
from callbridge.infra.observability import contact_latency
from callbridge.pbx.cloudpbx.protocol import (
    KIND,
    CloudPbxError,
    decode_body,
    invalid_parameters,
    invalid_token,
    parse_contact,
)
from callbridge.store.contacts import find_by_phone

COMMANDS = ("history", "event", "contact", "rating")
_COMMAND_NAME = re.compile(r"^[A-Za-z][A-Za-z_]{0,31}$")
_JSON = {"content-type": "application/json"}


def _response(status: int, body: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": _JSON,
        "body": json.dumps(body, ensure_ascii=False) if body is not None else "",
    }


def handle(event: dict[str, Any], command: str | None) -> dict[str, Any]:
    """`command` is fixed by the route (/cloudpbx/history) or None for the single address."""
    started = time.monotonic()  # the contact budget counts from the request's arrival
    parsed: list[str] = []  # the command once the body is parsed: the failure answer depends on it
    try:
        return _handle(event, command, started, parsed)
    except CloudPbxError as error:
        return _response(error.status, error.body)
    except Exception:
        from callbridge.infra.observability import logger

        # Our fault (a store or SSM outage), never the client's: the ringing phone still gets a
        # valid answer; anything else gets 503 so that the PBX sends it again later. Only the parsed
        # `cmd` decides: a history whose link or name merely contains "contact" must be retried.
        logger().exception("Cloud PBX webhook failed")
        if (command or (parsed[0] if parsed else "")) == "contact":
            return _response(200, {})
        return _response(503, {"error": "Temporarily unavailable"})


def _handle(event: dict[str, Any], route_command: str | None, started: float, parsed: list[str]) -> dict[str, Any]:
    headers = event.get("headers") or {}
    content_type = str(headers.get("content-type", "")) if isinstance(headers, dict) else ""
    fields = decode_body(event.get("body"), bool(event.get("isBase64Encoded")), content_type)
    account_id = str((event.get("pathParameters") or {}).get("account", ""))
    cmd = fields.get("cmd", "").strip()
    parsed.append(cmd)
    fast = (route_command or cmd) == "contact"

    account = _authenticate(account_id, fields.get("crm_token", ""), fast=fast)
    if route_command is not None:
        if cmd and cmd != route_command:
            raise invalid_parameters()
        cmd = route_command
    if not cmd:
        raise invalid_parameters()
    if cmd == "contact":
        served: list[str] = []
        answer = _contact(account, fields, started, served)
        contact_latency((time.monotonic() - started) * 1000, served[0] if served else "none")
        return _response(200, answer)
    if cmd in COMMANDS:
        # history/event/rating write the call; their modules (pydantic, logger) load only here.
        from callbridge.pbx.cloudpbx.commands import dispatch

        return _response(*dispatch(account, cmd, fields))
    from callbridge.infra.observability import logger

    # An unknown command gets 200 so that the PBX does not retry it forever. Its name is logged only
    # when it looks like a command name: a body field may carry anything, a secret included.
    shown = cmd if _COMMAND_NAME.match(cmd) else "<not a command name>"
    logger().warning("unknown Cloud PBX command ignored", extra={"account": account.id, "cmd": shown})
    return _response(200, None)


def _authenticate(account_id: str, token: str, *, fast: bool) -> Account:
    if not token:
        raise invalid_token()
    try:
        account = authenticate(account_id, token, fast=fast)
    except UnknownAccount:
        raise invalid_token() from None
    if account.pbx_kind != KIND:
        raise invalid_token()
    return account


def _contact(account: Account, fields: dict[str, str], started: float, served: list[str]) -> dict[str, str]:
    """The answer; `served` gets where it came from (directory, cache, crm, timeout, error), or
    stays empty when there was nothing to look up."""
    request = parse_contact(fields)
    try:
        found = _directory(account, request.phone)
    except Exception:  # the ringing phone gets a valid answer whatever happened to the directory
        from callbridge.infra.observability import logger

        logger().exception("contact lookup failed; answering without a contact", extra={"account": account.id})
        served.append("error")
        return {}
    if found is None:
        return {}
    e164, contact = found
    if account.has_crms:
        # Owner's status, and for a caller the directory does not know, the CRM under the budget.
        from callbridge.features.routing import SERVED, route

        routed = route(account, e164, contact, started)
        served.append(SERVED.get())
        return routed
    served.append("directory")
    if not contact:
        return {}
    answer = {"contact_name": contact.get("name"), "responsible": contact.get("responsible")}
    return {k: str(v) for k, v in answer.items() if v}


def _directory(account: Account, phone: str) -> tuple[str, dict[str, Any] | None] | None:
    """The caller's E.164 number and directory entry (None if not in the directory); None when the
    number is none. A known caller in the form the PBX sends (79101234567) is found without parsing
    the number (core/phones.py known_e164): phonenumbers loads only for the others."""
    guessed = known_e164(phone, account.phone_country_code)
    if guessed is not None:
        contact = find_by_phone(account.id, guessed, fast=True)
        if contact is not None:
            return guessed, contact
    e164 = normalize(phone, account.phone_region).e164
    if e164 is None:
        return None
    return e164, (find_by_phone(account.id, e164, fast=True) if e164 != guessed else None)
