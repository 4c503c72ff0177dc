"""Playing recordings back to the CRMs: who may, and where the bytes are.

Two ways in, both ending at a short-lived presigned S3 GET URL (or, when asked, the bytes of a small
file), so that recordings of any length play although a Lambda response is limited to 6 MB:

- MiniCRM's URL template `…/v1/{account}/recordings?Rec={ReferenceId}`: HTTP Basic credentials of
  the account (`authorize_basic`), optionally only from the account's `allowed_ips`.
- retailCRM's `recordUrl` `…/v1/{account}/recordings/{call id}?exp=…&sig=…`: an HMAC-SHA256 over
  `account|call id|exp` with the account's signing key (`signed_recording_url`, `verify_signature`).

The ReferenceId / {call id} is our call id. Every refusal is one of the PlaybackDenied errors; an
unknown call and another account's call are the same RecordingNotFound, so nobody learns whether
another account's recording exists. A call of the authenticated account whose recording is still
being fetched is RecordingNotStoredYet: a realtime CRM gets the link with the call, before the file
is stored, and a player asking meanwhile is told to ask again shortly. Secrets are compared in constant time
and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from callbridge.core import credentials
from callbridge.core.accounts import Account
from callbridge.infra import aws, secrets
from callbridge.infra.settings import RECORDING_RETENTION_MAX_DAYS, get_settings
from callbridge.store import calls

PRESIGN_TTL_S = 300
# No URL we sign lives longer than the longest retention: an `exp` further ahead was not signed by us.
MAX_LINK_TTL_S = RECORDING_RETENTION_MAX_DAYS * 86400
# ASCII digits of a time within MAX_LINK_TTL_S of now are 10 or 11 long; more is no time of ours
# (and int() refuses more than 4,300 digits with a ValueError).
_MAX_EXP_DIGITS = 12
# A base64 body grows by a third and must stay under Lambda's 6 MB response limit.
DIRECT_MAX_BYTES = 4 * 1024 * 1024


class PlaybackDenied(Exception):
    """Base of every refusal."""


class BadCredentials(PlaybackDenied):
    """Missing or wrong Basic credentials, or an unknown account."""


class SourceNotAllowed(PlaybackDenied):
    """The request's source address is not in the account's allowlist."""


class BadSignature(PlaybackDenied):
    """Missing, malformed, tampered or expired signature, or an unknown account."""


class RecordingNotFound(PlaybackDenied):
    """No such call for this account, or it has no recording (none, or given up)."""


class RecordingNotStoredYet(RecordingNotFound):
    """A call of this account whose recording is still being fetched: a realtime CRM has the call
    (and this link) before the file is stored. Asked again after `RETRY_AFTER_S`, it plays."""


# What a "not yet" suggests waiting: a recording is stored within seconds of its call's end unless
# the PBX's server fails, and a manager who presses play again should not wait longer than that.
RETRY_AFTER_S = 10


@dataclass(frozen=True, slots=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    content_type: str


# ---------------------------------------------------------------------------------------------
# The account
# ---------------------------------------------------------------------------------------------
def _account(account_id: str, error: type[PlaybackDenied]) -> Account:
    account = credentials.known(account_id)
    if account is None:
        raise error()
    return account


# ---------------------------------------------------------------------------------------------
# MiniCRM: Basic auth + source IP allowlist
# ---------------------------------------------------------------------------------------------
def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic …` header; None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def source_allowed(source_ip: str | None, allowed: list[str]) -> bool:
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address((source_ip or "").strip())
    except ValueError:
        return False
    for entry in allowed:
        network = ipaddress.ip_network(entry, strict=False)
        if address.version == network.version and address in network:
            return True
    return False


def authorize_basic(account_id: str, authorization: str | None, source_ip: str | None) -> Account:
    """The account, when the request comes from an allowed address with the account's credentials."""
    account = _account(account_id, BadCredentials)
    if not source_allowed(source_ip, account.recordings_allowed_ips):
        raise SourceNotAllowed()
    presented = parse_basic(authorization)
    if presented is None:
        raise BadCredentials()
    user, password = presented

    def check(values: dict[str, str]) -> bool:
        # Both compared, whatever the first gives: no early exit that timing could reveal.
        user_ok = secrets.matches_any(user, [values.get(secrets.RECORDINGS_USER, "")])
        password_ok = secrets.matches_any(password, [values.get(secrets.RECORDINGS_PASSWORD, "")])
        return user_ok and password_ok

    if credentials.secrets_match(account, check) is None:
        raise BadCredentials()
    return account


# ---------------------------------------------------------------------------------------------
# retailCRM: signed URLs
# ---------------------------------------------------------------------------------------------
def signature(key: str, account_id: str, call_id: str, expires: int) -> str:
    message = f"{account_id}|{call_id}|{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed_recording_url(base_url: str, account_id: str, call_id: str, ttl: int, *, now: float | None = None) -> str:
    """The recording URL to give a CRM (retailCRM `recordUrl`), valid for `ttl` seconds."""
    key = secrets.account_secret(account_id, secrets.RECORDINGS_SIGNING_KEY)
    if not key:
        raise LookupError(f"account {account_id} has no recording signing key: apply its account file")
    expires = int(time.time() if now is None else now) + int(ttl)
    query = urlencode({"exp": expires, "sig": signature(key, account_id, call_id, expires)})
    return f"{base_url.rstrip('/')}/v1/{account_id}/recordings/{quote(call_id, safe='')}?{query}"


def verify_signature(
    account_id: str, call_id: str, expires: str | None, sig: str | None, *, now: float | None = None
) -> Account:
    """The account, when `sig` signs (account, call id, expires), `expires` has not passed and is no
    further ahead than MAX_LINK_TTL_S. `expires` is ASCII digits only: str.isdigit() alone accepts
    '²' and other Unicode digits that int() then refuses."""
    if not expires or not sig or len(sig) != 64:
        raise BadSignature()
    if len(expires) > _MAX_EXP_DIGITS or not (expires.isascii() and expires.isdigit()):
        raise BadSignature()
    current = time.time() if now is None else now
    if not current <= int(expires) <= current + MAX_LINK_TTL_S:
        raise BadSignature()
    account = _account(account_id, BadSignature)
    presented = sig.lower().encode()

    def check(values: dict[str, str]) -> bool:
        key = values.get(secrets.RECORDINGS_SIGNING_KEY, "")
        return bool(key) and hmac.compare_digest(presented, signature(key, account_id, call_id, int(expires)).encode())

    if credentials.secrets_match(account, check) is None:
        raise BadSignature()
    return account


# ---------------------------------------------------------------------------------------------
# The stored object
# ---------------------------------------------------------------------------------------------
def locate(account_id: str, call_id: str) -> StoredObject:
    """The stored recording of a call of this account; RecordingNotStoredYet while its fetch has
    neither stored nor given up, RecordingNotFound otherwise. Only an authenticated account's own
    call can be "not yet": whether another account's call exists is never told."""
    bucket = get_settings().recordings_bucket
    call = calls.get_call(account_id, call_id) if call_id else None
    recording = (call or {}).get("recording") or {}
    if call and not call.get("recording_state") and _fetchable(call.get("recording_url")):
        raise RecordingNotStoredYet()
    if not bucket or not call or call.get("recording_state") != "stored" or not recording.get("key"):
        raise RecordingNotFound()
    return StoredObject(
        bucket=bucket,
        key=str(recording["key"]),
        size=int(recording.get("size") or 0),
        content_type=str(recording.get("content_type") or "application/octet-stream"),
    )


def _fetchable(link: object) -> bool:
    return str(link or "").lower().startswith(("http://", "https://"))


def presigned_url(stored: StoredObject, ttl: int = PRESIGN_TTL_S) -> str:
    """A GET URL for the object, valid `ttl` seconds, answering with the stored Content-Type.
    S3 serves Range requests on it (206), which players use to seek."""
    url: str = aws.s3().generate_presigned_url(
        "get_object",
        Params={"Bucket": stored.bucket, "Key": stored.key, "ResponseContentType": stored.content_type},
        ExpiresIn=ttl,
    )
    return url


# A CRM that downloads the recording itself when it gets the call (Bitrix24's attachRecord) gets a
# URL that answers the bytes (no redirect); it is used within seconds.
DOWNLOAD_TTL_S = 3600


def download_link(account_id: str, call_id: str, playback_url: str) -> tuple[str, str]:
    """(a URL that answers the stored bytes themselves, the file's extension: wav or mp3) of a
    call's stored recording; RecordingNotFound when it has none. A file our playback may answer in
    its body: `playback_url` (signed) with `direct=1`, served by the recordings function. A larger
    one: the object's presigned GET URL - signed with the caller's role, which must then be allowed
    to read the recordings bucket."""
    stored = locate(account_id, call_id)
    extension = "wav" if "wav" in stored.content_type.lower() else "mp3"
    if stored.size and stored.size <= DIRECT_MAX_BYTES:
        return f"{playback_url}{'&' if '?' in playback_url else '?'}direct=1", extension
    return presigned_url(stored, DOWNLOAD_TTL_S), extension


def read_small(stored: StoredObject) -> bytes | None:
    """The object's bytes when it is small enough for a response body, else None."""
    if stored.size > DIRECT_MAX_BYTES:
        return None
    body = aws.s3().get_object(Bucket=stored.bucket, Key=stored.key)["Body"]
    data = body.read(DIRECT_MAX_BYTES + 1)
    return data if len(data) <= DIRECT_MAX_BYTES else None
