"""Click-to-call: a CRM (retailCRM's makeCallUrl, or anyone with the account's API key) asks us to
make the account's PBX ring a manager and then dial a client.

PBX side: the account's PBX adapter's `dialer` (callbridge.pbx.base), e.g. Cloud PBX `makeCall`
(docs/cloudpbx.md) or telediscount `outcome` (docs/telediscount.md); a PBX without one cannot
place calls.

The answer is "accepted" only when the PBX accepted; every refusal is a `ClickToCallError` with the
status our API answers and a message safe to show (no secret, no URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.core.phones import normalize
from callbridge.features.users import find_user
from callbridge.infra import secrets
from callbridge.pbx.base import ClickToCallRefused, adapter_of

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
    adapter = adapter_of(account.pbx_kind)
    dial = adapter.dialer if adapter is not None else None
    if dial is None:
        raise NotConfigured(f"a {account.pbx_kind or 'missing'} PBX cannot place calls")
    try:
        call_id = dial(account, user, number.e164, clid)
    except ClickToCallRefused as refused:
        raise ClickToCallError(refused.message, refused.status) from None
    return Placed(account.id, str(user["pbx_user"]), number.e164, call_id)


def resolve_retailcrm_user(account: Account, code: str | None, user_id: str | None) -> dict[str, Any] | None:
    return find_user(account, crm_code=(code or "").strip() or None, retailcrm_user_id=(user_id or "").strip() or None)


def resolve_api_user(account: Account, user: str | None, extension: str | None) -> dict[str, Any] | None:
    if user:
        return find_user(account, pbx_user=user)
    if extension:
        return find_user(account, extension=extension)
    return None
