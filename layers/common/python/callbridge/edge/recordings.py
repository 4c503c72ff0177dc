"""The recordings endpoints as API Gateway (HTTP API) sees them: routing, request parsing and the one
mapping of refusals and failures to statuses. Who may play what, and where the bytes are, is
callbridge.features.recordings.playback's (docs/accounts.md, "Recordings").

GET /v1/{account}/recordings?Rec={call id}          MiniCRM: Basic auth, optional source-IP allowlist
GET /v1/{account}/recordings/{call id}?exp=…&sig=…  retailCRM recordUrl: signed, expiring

Both answer 302 to a short-lived presigned S3 URL, or the audio itself for a small file when
`?direct=1` or the account's `recordings.serve_direct` asks; 404 with `Retry-After` while a call's
recording is still being fetched. Nothing here ever answers 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from callbridge.core.accounts import Account
from callbridge.edge.router import Response, Router
from callbridge.features.recordings.playback import (
    RETRY_AFTER_S,
    BadCredentials,
    BadSignature,
    PlaybackDenied,
    RecordingNotFound,
    RecordingNotStoredYet,
    SourceNotAllowed,
    authorize_basic,
    locate,
    presigned_url,
    read_small,
    verify_signature,
)
from callbridge.infra.observability import bind, logger

app = Router()
_JSON = "application/json"
_NOT_FOUND = '{"error": "Recording not found"}'
_DENIED = (401, '{"error": "Invalid credentials"}', {"WWW-Authenticate": 'Basic realm="recordings"'})
# Refusal -> (status, body, extra headers). The same 404 for every "not here" case, so that nobody
# learns whether another account's recording exists. A source address outside the allowlist gets
# the very answer of wrong credentials (which an unknown account gets too): a different one would
# tell a prober that the account exists and has an allowlist.
_REFUSALS: dict[type[PlaybackDenied], tuple[int, str, dict[str, str]]] = {
    BadCredentials: _DENIED,
    SourceNotAllowed: _DENIED,
    BadSignature: (401, '{"error": "Invalid or expired signature"}', {}),
    RecordingNotFound: (404, _NOT_FOUND, {}),
    # The link reached the CRM with its call, before the file was stored: still a 404 (no 5xx that
    # would page anyone, no body a player could take for audio), with the time to ask again.
    RecordingNotStoredYet: (
        404,
        '{"error": "Recording not stored yet", "retry": true}',
        {"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"},
    ),
}


def _answer(account: Account, call_id: str) -> Response[Any]:
    bind(account=account.id, call_id=call_id)
    stored = locate(account.id, call_id)
    asked = app.current_event.query("direct", "") in ("1", "true")
    if asked or account.recordings_serve_direct:
        body = read_small(stored)
        if body is not None:
            return Response(200, stored.content_type, body, headers={"Cache-Control": "private, no-store"})
    return Response(302, None, "", headers={"Location": presigned_url(stored), "Cache-Control": "no-store"})


@app.get("/v1/<account>/recordings")
def minicrm(account: str) -> Response[Any]:
    event = app.current_event
    allowed = authorize_basic(account, event.headers.get("authorization"), event.source_ip)
    return _answer(allowed, event.query("Rec", "") or "")


@app.get("/v1/<account>/recordings/<call_id>")
def signed(account: str, call_id: str) -> Response[Any]:
    event = app.current_event
    call = unquote(call_id)  # the route matches the raw (still percent-encoded) path
    allowed = verify_signature(account, call, event.query("exp"), event.query("sig"))
    return _answer(allowed, call)


@app.exception_handler(PlaybackDenied)
def refused(error: PlaybackDenied) -> Response[str]:
    status, body, headers = _REFUSALS.get(type(error), _REFUSALS[RecordingNotFound])
    return Response(status, _JSON, body, headers=headers)


@app.exception_handler(Exception)
def failed(error: Exception) -> Response[str]:
    # Our fault (a store, SSM or S3 outage): a retryable 503, never a 500.
    logger().exception("recording playback failed")
    return Response(503, _JSON, '{"error": "Temporarily unavailable"}')


@app.not_found
def not_found(error: Exception) -> Response[str]:
    return Response(404, _JSON, _NOT_FOUND)


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
