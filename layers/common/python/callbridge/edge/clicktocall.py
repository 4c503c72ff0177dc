"""The click-to-call family of JSON APIs (docs/clicktocall.md): API Gateway parsing and one error
mapping for all of them. A refusal keeps its status, a malformed request is 400 / 422, an unknown
route 404, our own failure a retryable 503 — never a 500.

- GET /v1/{account}/{crm}/make-call: a CRM's click-to-call (retailCRM's makeCallUrl). 200 only when
  the PBX accepted the call; the CRM shows any other status to the manager as a failed call.
- POST /v1/{account}/{crm}/make-call: the same for a CRM that posts an event as a form (Bitrix24's
  OnExternalCallStart; the connector reads the fields and the token).
- POST /v1/{account}/calls: the same for any CRM or script: JSON `{user | extension, phone, clid?}`,
  `Authorization: Bearer <account API key>`. The body is read here, before anything else: a body
  that is not JSON (another Content-Type 415; not UTF-8, not JSON, nested too deep 400; not the
  model 422) is the caller's mistake, answered alike for every account name.
- GET /v1/{account}/{crm}/user-status: a CRM's report of a manager's status (retailCRM's
  changeUserStatusUrl); the contact path routes to a manager only while it is `free`.
"""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from callbridge.edge.router import Response, Router
from callbridge.features import clicktocall
from callbridge.features.clicktocall import ClickToCallError
from callbridge.infra.observability import bind, logger

JSON = "application/json"


class CallRequest(NamedTuple):
    """The body of POST /calls, as edge/call_request.py's model accepts it."""

    user: str | None
    extension: str | None
    phone: str
    clid: str | None


# Field → (least, most) characters: edge/call_request.py's constraints, which tests hold this to.
_CALL_FIELDS = {"user": (1, 256), "extension": (1, 32), "phone": (1, 64), "clid": (0, 64)}


def plainly_valid(data: Any) -> CallRequest | None:
    """The request, when `data` is one that edge/call_request.py's model surely accepts as it is
    (the fields it knows, text of the lengths it allows, a user or an extension); None when only the
    model can tell, and say what is wrong. Every request scripts send well-formed is read here, so
    that a cold start pays pydantic's import only for a body that needs its verdict.
    tests/unit/test_clicktocall_units.py holds the two to the same answers."""
    if not isinstance(data, dict) or "phone" not in data or not set(data) <= _CALL_FIELDS.keys():
        return None
    for name, value in data.items():
        least, most = _CALL_FIELDS[name]
        if value is None and name != "phone":
            continue
        if type(value) is not str or not least <= len(value) <= most or not _utf8(value):
            return None
    if not data.get("user") and not data.get("extension"):
        return None
    return CallRequest(data.get("user"), data.get("extension"), data["phone"], data.get("clid"))


def _utf8(text: str) -> bool:
    # A lone surrogate (JSON's "\ud800") is no text the model takes.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class UnsupportedBody(Exception):
    """POST /calls with a Content-Type other than JSON: 415."""


class MalformedBody(Exception):
    """A body that cannot be read at all (not UTF-8, not JSON, nested too deep): 400."""


class InvalidRequest(Exception):
    """A JSON body that is not a call request: 422, with what is wrong in it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems


def _is_json(content_type: str | None) -> bool:
    # No Content-Type is read as JSON, as the framework did before (scripts that omit it keep working).
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def call_request(app: Router) -> CallRequest:
    """The body of POST /calls. Parsed here rather than by the framework's validation, which let a
    wrong Content-Type, bytes that are not UTF-8 and a deeply nested array escape as exceptions
    (a 503 and a stack trace for the caller's mistake)."""
    event = app.current_event
    if not _is_json(event.headers.get("content-type")):
        raise UnsupportedBody()
    try:
        raw = event.body or ""
        text = base64.b64decode(raw, validate=True).decode("utf-8") if event.is_base64_encoded else raw
        # json.loads recurses once per nesting level: 100,000 '[' exhaust the stack (RecursionError).
        data = json.loads(text)
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedBody("The body is not a JSON document in UTF-8") from None
    plain = plainly_valid(data)
    if plain is not None:
        return plain
    # Here, not at the top: only a body the plain check cannot vouch for needs the model.
    from pydantic import ValidationError

    from callbridge.edge.call_request import CallRequestModel

    try:
        model = CallRequestModel.model_validate(data)
        return CallRequest(model.user, model.extension, model.phone, model.clid)
    except ValidationError as error:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()]
        raise InvalidRequest(problems) from None


def _query(app: Router) -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _form(app: Router) -> dict[str, str]:
    """A CRM's request posted as a form (Bitrix24's event handlers), as flat fields: nested names
    stay as sent (`data[PHONE_NUMBER]`), the connector reads its own. Not a form: 415."""
    event = app.current_event
    media = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedBody("application/x-www-form-urlencoded")
    try:
        raw = event.body or ""
        text = base64.b64decode(raw, validate=True).decode("utf-8") if event.is_base64_encoded else raw
    except ValueError:
        raise MalformedBody("The body is not a form in UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def make_call_app() -> Router:
    app = Router()

    @app.get("/v1/<account>/<crm>/make-call")
    def crm_make_call(account: str, crm: str) -> Response[Any]:
        bind(account=account)
        placed = clicktocall.crm_make_call(account, crm, _query(app))
        logger().info("click-to-call placed", extra={"pbx_user": placed.pbx_user, "source": crm})
        return Response(200, JSON, placed.as_dict())

    @app.post("/v1/<account>/<crm>/make-call")
    def crm_event_make_call(account: str, crm: str) -> Response[Any]:
        bind(account=account)
        placed = clicktocall.crm_make_call(account, crm, _form(app))
        logger().info("click-to-call placed", extra={"pbx_user": placed.pbx_user, "source": crm})
        return Response(200, JSON, placed.as_dict())

    @app.post("/v1/<account>/calls")
    def api_make_call(account: str) -> Response[Any]:
        bind(account=account)
        request = call_request(app)
        authorization = app.current_event.headers.get("authorization")
        placed = clicktocall.api_make_call(
            account, authorization, request.user, request.extension, request.phone, request.clid
        )
        logger().info("click-to-call placed", extra={"pbx_user": placed.pbx_user, "source": "api"})
        return Response(200, JSON, placed.as_dict())

    def invalid(error: InvalidRequest) -> Response[Any]:
        return Response(422, JSON, {"error": "Invalid request", "details": error.problems})

    def unsupported(error: UnsupportedBody) -> Response[Any]:
        return Response(415, JSON, {"error": f"Content-Type must be {error.args[0] if error.args else JSON}"})

    def bad_request(error: MalformedBody) -> Response[Any]:
        return Response(400, JSON, {"error": str(error)})

    app.exception_handler(InvalidRequest)(invalid)
    app.exception_handler(MalformedBody)(bad_request)
    app.exception_handler(UnsupportedBody)(unsupported)
    install_error_answers(app, "click-to-call failed")
    return app


def user_status_app() -> Router:
    app = Router()

    @app.get("/v1/<account>/<crm>/user-status")
    def user_status(account: str, crm: str) -> Response[Any]:
        bind(account=account)
        pbx_user, status = clicktocall.crm_user_status(account, crm, _query(app))
        logger().info("manager status stored", extra={"pbx_user": pbx_user, "status": status})
        return Response(200, JSON, {"user": pbx_user, "status": status})

    install_error_answers(app, "storing a manager status failed")
    return app


def install_error_answers(app: Router, failure: str) -> None:
    """`failure` is the log message of an unexpected error (a store or SSM outage)."""

    def refused(error: ClickToCallError) -> Response[Any]:
        if error.status >= 500:
            logger().warning("the PBX or CRM failed", extra={"status": error.status, "reason": error.message})
        return Response(error.status, JSON, {"error": error.message})

    def failed(error: Exception) -> Response[Any]:
        logger().exception(failure)
        return Response(503, JSON, {"error": "Temporarily unavailable"})

    def not_found(error: Exception) -> Response[Any]:
        return Response(404, JSON, {"error": "Not found"})

    app.exception_handler(ClickToCallError)(refused)
    app.exception_handler(Exception)(failed)
    app.not_found(not_found)
