"""Click-to-call: a CRM (retailCRM's makeCallUrl, or anyone with the account's API key) asks us to
make the account's PBX ring a manager and then dial a client.

PBX side, one adapter per kind in `_DIALERS`:
- Cloud PBX `makeCall` (specs/cloudpbx.md): form POST with `token`; `phone` digits only.
- telediscount `outcome` (specs/telediscount.md): `num_a` = the user's SIP account, `num_b` = the
  number in universal format (digits, country code first).

The answer is "accepted" only when the PBX accepted; every refusal is a `ClickToCallError` with the
status our API answers and a message safe to show (no secret, no URL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.core.phones import normalize
from callbridge.features.users import find_user
from callbridge.infra import secrets
from callbridge.infra.settings import get_settings
from callbridge.pbx.cloudpbx.client import PbxError, pbx_phone

INVALID_CLIENT_ID = "Invalid clientId"


class ClickToCallError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class Unauthorized(ClickToCallError):
    status = 401


class UnknownUser(ClickToCallError):
    status = 404


class NotConfigured(ClickToCallError):
    status = 409


@dataclass(frozen=True, slots=True)
class Placed:
    account: str
    pbx_user: str
    phone: str  # E.164
    pbx_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body = {"status": "calling", "user": self.pbx_user, "phone": self.phone}
        if self.pbx_call_id:
            body["pbx_call_id"] = self.pbx_call_id
        return body


def load_account(account_id: str, refusal: str = "Invalid credentials") -> Account:
    """`refusal` is the message of a wrong key on the same route: an unknown account gets exactly
    that answer, so that nobody learns which accounts exist."""
    try:
        return get_account(account_id)
    except UnknownAccount:
        raise Unauthorized(refusal) from None


def authorize_retailcrm(account: Account, client_id: str) -> dict[str, Any]:
    """The account's retailCRM whose `clientId` this is (constant-time, against every retailCRM of
    the account); Unauthorized otherwise."""
    crms = [c for c in account.config.get("crms") or [] if isinstance(c, dict) and c.get("kind") == "retailcrm"]
    if not client_id or not crms:
        raise Unauthorized(INVALID_CLIENT_ID)
    found: list[dict[str, Any]] = []

    def check(values: dict[str, str]) -> bool:
        found.clear()
        for crm in crms:
            if secrets.matches_any(client_id, [values.get(secrets.crm_secret_name(str(crm["name"]), "client_id"), "")]):
                found.append(crm)
        return bool(found)

    if not secrets.check_with_refresh(account.id, check):
        raise Unauthorized(INVALID_CLIENT_ID)
    return found[0]


def authorize_api_key(account: Account, authorization: str | None) -> None:
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Invalid credentials")

    def check(values: dict[str, str]) -> bool:
        return secrets.matches_any(
            key.strip(), [values.get(secrets.API_KEY, ""), values.get(secrets.API_KEY_PREVIOUS, "")]
        )

    if not secrets.check_with_refresh(account.id, check):
        raise Unauthorized("Invalid credentials")


def query_phone(raw: str | None) -> str:
    """A phone from a query string: an unencoded `+` (retailCRM's own example) decodes to a space."""
    value = raw or ""
    return "+" + value.strip() if value.startswith(" ") and value.strip()[:1].isdigit() else value.strip()


def make_call(account: Account, user: dict[str, Any] | None, phone: str, *, clid: str | None = None) -> Placed:
    if user is None:
        raise UnknownUser("No PBX user is mapped to this CRM user")
    number = normalize(phone, account.phone_region)
    if number.e164 is None:
        raise ClickToCallError("phone is not a number we can dial")
    dial = _DIALERS.get(account.pbx_kind)
    if dial is None:
        raise NotConfigured(f"a {account.pbx_kind or 'missing'} PBX cannot place calls")
    call_id = dial(account, user, number.e164, clid)
    return Placed(account.id, str(user["pbx_user"]), number.e164, call_id)


def _cloudpbx(account: Account, user: dict[str, Any], e164: str, clid: str | None) -> str | None:
    from callbridge.pbx.cloudpbx.client import CloudPbxClient

    api_url = (account.config.get("pbx") or {}).get("api_url")
    token = secrets.account_secrets(account.id).get(secrets.PBX_TOKEN)
    if not api_url or not token:
        raise NotConfigured("the account's Cloud PBX has no api_url or token")
    client = CloudPbxClient(str(api_url), token, timeout_s=get_settings().pbx_timeout_s)
    try:
        return client.make_call(str(user["pbx_user"]), e164, clid=clid)
    except PbxError as error:
        raise ClickToCallError(error.message, error.status) from None


def _telediscount(account: Account, user: dict[str, Any], e164: str, clid: str | None) -> str | None:
    from callbridge.pbx.telediscount.client import TelediscountApi, TelediscountError

    sip = user.get("sip_account")
    if not sip:
        raise UnknownUser(f"PBX user {user['pbx_user']} has no sip_account in the mapping")
    api_url = str((account.config.get("pbx") or {}).get("api_url") or "")
    api_key = secrets.account_secrets(account.id).get(secrets.pbx_secret_name("api_key"))
    if not api_url or not api_key:
        raise NotConfigured("the account's telediscount PBX has no api_url or api_key")
    api = TelediscountApi(api_url, api_key, timeout_s=float(get_settings().pbx_timeout_s))
    try:
        answer = api.outcome(str(sip), pbx_phone(e164))
    except TelediscountError as error:
        timed_out = error.transient and error.status is None and "timed out" in str(error)
        status = 504 if timed_out else 502
        reason = "did not answer in time" if timed_out else f"refused the call ({error.status or 'no answer'})"
        raise ClickToCallError(f"the PBX {reason}", status) from None
    refusal = _telediscount_refusal(answer)
    if refusal:
        raise ClickToCallError(f"the PBX refused the call: {refusal}", 502)
    call_id = answer.get("api_call_id") or answer.get("call_id")
    return str(call_id) if call_id else None


def _telediscount_refusal(answer: dict[str, Any]) -> str | None:
    """The seed documents no answer body: a 200 is acceptance unless it says otherwise."""
    error = answer.get("error") or answer.get("errors")
    if error:
        return str(error)[:200]
    if answer.get("success") is False or str(answer.get("status", "")).lower() in ("error", "fail", "failed"):
        return str(answer.get("message") or answer.get("status") or "error")[:200]
    return None


_DIALERS: dict[str, Callable[[Account, dict[str, Any], str, str | None], str | None]] = {
    "cloudpbx": _cloudpbx,
    "telediscount": _telediscount,
}


def resolve_retailcrm_user(account: Account, code: str | None, user_id: str | None) -> dict[str, Any] | None:
    return find_user(account, crm_code=(code or "").strip() or None, retailcrm_user_id=(user_id or "").strip() or None)


def resolve_api_user(account: Account, user: str | None, extension: str | None) -> dict[str, Any] | None:
    if user:
        return find_user(account, pbx_user=user)
    if extension:
        return find_user(account, extension=extension)
    return None
