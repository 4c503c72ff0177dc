"""Click-to-call: a CRM (its own make-call request, or anyone with the account's API key) asks us to
make the account's PBX ring a manager and then dial a client (docs/clicktocall.md).

A CRM's requests are its own protocol (callbridge.crm.base.Callbacks): the CRMs of the account that
authorize click-to-call (`click_to_call_secret`) are checked against the secret presented, and the
CRM's package reads the rest. The same authorization covers a CRM's manager-status reports.

PBX side: the account's PBX's `Dialer` capability (callbridge.pbx.base), e.g. Cloud PBX `makeCall`
(docs/cloudpbx.md) or telediscount `outcome` (docs/telediscount.md); a PBX without one cannot
place calls.

The answer is "accepted" only when the PBX accepted; every refusal is a `ClickToCallError` with the
status our API answers and a message safe to show (no secret, no URL).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callbridge import registry
from callbridge.core import clicks, credentials, live
from callbridge.core.accounts import Account
from callbridge.core.phones import normalize
from callbridge.infra import secrets
from callbridge.infra.observability import logger
from callbridge.pbx.base import ClickToCallRefused, Dialer
from callbridge.store.updates import Update

if TYPE_CHECKING:
    from callbridge.core.config import CrmSettings, UserMapping
    from callbridge.crm.base import Callback, Callbacks

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
    account = credentials.known(account_id)
    if account is None:
        raise Unauthorized(refusal)
    return account


def callback_crms(account: Account, kind: str) -> list[CrmSettings]:
    """The account's CRMs of `kind` that authorize click-to-call; Unauthorized when there is none."""
    if not account.has_crms:
        raise Unauthorized(INVALID_CLIENT_ID)
    # The CRMs' shared interface (and pydantic, with the account's settings) is loaded by the
    # requests that need it, not by the import: the call history and the console API import this
    # module to check an API key.
    from callbridge.crm.base import click_to_call_secret

    crms = [c for c in account.settings.crms if c.kind == kind and click_to_call_secret(c)]
    if not crms:
        raise Unauthorized(INVALID_CLIENT_ID)
    return crms


def authorize_crm(account: Account, crms: list[CrmSettings], presented: str) -> CrmSettings:
    """The CRM whose click-to-call secret was presented (constant-time, against every one of
    `crms`); Unauthorized otherwise."""
    if not presented:
        raise Unauthorized(INVALID_CLIENT_ID)
    from callbridge.crm.base import click_to_call_secret

    found: list[CrmSettings] = []

    def check(values: dict[str, str]) -> bool:
        found.clear()
        for crm in crms:
            name = secrets.crm_secret_name(crm.name, click_to_call_secret(crm) or "")
            if secrets.matches_any(presented, [values.get(name, "")]):
                found.append(crm)
        return bool(found)

    if credentials.secrets_match(account, check, under=secrets.CRMS) is None:
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

    if credentials.secrets_match(account, check) is None:
        raise Unauthorized("Invalid credentials")


def _callbacks(kind: str) -> Callbacks:
    """How the CRM `kind` reads its requests; only asked for a kind `callback_crms` found, whose
    settings declare click_to_call_secret."""
    from callbridge.crm.base import Callbacks

    found = registry.crm_capability(kind, Callbacks)
    if found is None:
        raise Unauthorized(INVALID_CLIENT_ID)
    return found


def crm_make_call(account_id: str, kind: str, query: Mapping[str, str]) -> Placed:
    """A CRM's make-call request: its secret, the manager it names, the number."""
    account = load_account(account_id, INVALID_CLIENT_ID)
    crms = callback_crms(account, kind)
    callbacks = _callbacks(kind)
    request = callbacks.read_callback(query)
    crm = authorize_crm(account, crms, request.secret)
    if not request.phone:
        raise ClickToCallError("phone is required")
    user = callbacks.callback_user(account.settings.users, request)
    if request.reference:
        return _once_per_reference(account, crm, request, user)
    return _placed(account, crm, request, user)


def _once_per_reference(account: Account, crm: CrmSettings, request: Callback, user: UserMapping | None) -> Placed:
    """A request naming the CRM's own call id (Bitrix24's CALL_ID) is executed once per id: the id
    is claimed before the PBX is asked (store/crm_calls.py), a replay of the same request - the
    CRM's retry or anyone's - gets the first one's answer and dials nothing. A request the PBX
    refused releases its claim, so that the CRM's retry may try again."""
    from callbridge.store import crm_calls

    key, owner, now = f"click-ref#{request.reference}", uuid.uuid4().hex, int(time.time())
    claimed = crm_calls.claim(account.id, key, crm.name, {"owner": owner}, now)
    if claimed.get("owner") != owner:
        logger().warning("a click-to-call request repeated for the same CRM call id: not dialled again")
        return Placed(account.id, str(claimed.get("pbx_user") or ""), str(claimed.get("phone") or ""),
                      str(claimed.get("pbx_call_id") or "") or None)  # fmt: skip
    try:
        placed = _placed(account, crm, request, user)
    except Exception:
        crm_calls.release(account.id, key, crm.name, owner)
        raise
    kept = {"pbx_user": placed.pbx_user, "phone": placed.phone, "pbx_call_id": placed.pbx_call_id}
    crm_calls.update(account.id, key, crm.name, Update().set(**{k: v for k, v in kept.items() if v}))
    return placed


def _placed(account: Account, crm: CrmSettings, request: Callback, user: UserMapping | None) -> Placed:
    placed = make_call(account, user, request.phone, clid=request.clid, card=False)
    from callbridge.crm.base import CallPlaced

    placed_hook = registry.crm_capability(crm.kind, CallPlaced) if request.reference else None
    if placed_hook is not None:
        # The CRM registered the call itself (its `reference`): its connector files our call under it.
        # The PBX is dialling already: a failure here is logged, the answer stays "calling".
        try:
            placed_hook.call_placed(account, crm, request, placed.pbx_user, placed.phone, placed.pbx_call_id)
        except Exception:
            logger().exception("the CRM's call id could not be kept for the placed call")
    # After call_placed: a CRM that registered the call itself shows the card under its own id.
    if user is not None:
        _open_card(account, user, placed.phone, placed.pbx_call_id)
    return placed


def crm_user_status(account_id: str, kind: str, query: Mapping[str, str]) -> tuple[str, str]:
    """A CRM's report of a manager's status, stored for routing; (PBX user, status)."""
    from callbridge.features.routing import STATUSES, store_status

    account = load_account(account_id, INVALID_CLIENT_ID)
    crms = callback_crms(account, kind)
    callbacks = _callbacks(kind)
    request = callbacks.read_callback(query)
    authorize_crm(account, crms, request.secret)
    status = request.status.strip().lower()
    if status not in STATUSES:
        raise ClickToCallError(f"status must be one of {', '.join(STATUSES)}")
    user = callbacks.callback_user(account.settings.users, request)
    if user is None:
        raise UnknownUser("No PBX user is mapped to this CRM user")
    store_status(account.id, user.pbx_user, status, request.manager)
    return user.pbx_user, status


def api_make_call(account_id: str, authorization: str | None, user: str | None, extension: str | None, phone: str,
                  clid: str | None) -> Placed:  # fmt: skip
    """`POST /v1/{account}/calls`: the account's API key, a PBX user or extension, the number."""
    account = load_account(account_id)
    authorize_api_key(account, authorization)
    return make_call(account, resolve_api_user(account, user, extension), phone, clid=clid)


def make_call(
    account: Account, user: UserMapping | None, phone: str, *, clid: str | None = None, card: bool = True
) -> Placed:
    if user is None:
        raise UnknownUser("No PBX user is mapped to this CRM user")
    number = normalize(phone, account.phone_region)
    if number.e164 is None:
        raise ClickToCallError("phone is not a number we can dial")
    dialer = registry.pbx_capability(account.pbx_kind, Dialer)
    if dialer is None:
        raise NotConfigured(f"a {account.pbx_kind or 'missing'} PBX cannot place calls")
    try:
        call_id = dialer.dial(account, user, number.e164, clid)
    except ClickToCallRefused as refused:
        raise ClickToCallError(refused.message, refused.status) from None
    if card:
        _open_card(account, user, number.e164, call_id)
    return Placed(account.id, user.pbx_user, number.e164, call_id)


def _open_card(account: Account, user: UserMapping, e164: str, pbx_call_id: str | None) -> None:
    """The PBX accepted: it rings the manager first, then dials the client. The manager sees the
    client's card (`out`) in the CRMs that show cards (callbridge.core.live), whatever PBX places
    the call: the PBXs report no outgoing call as it starts (telediscount has no such webhook, the
    Cloud PBX's documented events are incoming). Under the PBX's call id when it gave one, so that
    the call's end closes the same card; a card is never worth failing the call for."""
    if not live.wanted(account):
        return
    call_id = pbx_call_id or f"c2c-{uuid.uuid4().hex}"
    if pbx_call_id is None:
        # The PBX's own call of this manager to this number, when it comes, is this one
        # (callbridge.core.clicks): it closes this card and files under what the CRM keeps for it.
        try:
            clicks.expect(account.id, user.pbx_user, e164, call_id)
        except Exception:
            logger().exception("could not keep a click-to-call for the PBX call that answers it")
    live.publish(account, live.event(account, "ringing", call_id, e164, (user.pbx_user,), direction="out"))


def resolve_api_user(account: Account, user: str | None, extension: str | None) -> UserMapping | None:
    users = account.settings.users
    if user:
        return next((u for u in users if u.pbx_user == user), None)
    if extension:
        return next((u for u in users if (u.extension or "") == extension), None)
    return None
