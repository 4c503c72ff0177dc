"""Zadarma (Novofon) as a PBX adapter (callbridge.pbx.base), docs/zadarma.md: the secret of our
notification address, its cabinet lines, click-to-call (`/v1/request/callback/`), its extensions
(`/v1/pbx/internal/`), the reconciliation and backfill from `/v1/statistics/pbx/`, and the recording
link asked for at fetch time (`/v1/pbx/record/request/`: its links expire)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from callbridge.pbx.base import (
    Backfill,
    ClickToCallRefused,
    Dialer,
    ListedUser,
    PbxAdapter,
    ScheduledJob,
    UnknownUser,
    UserListing,
)
from callbridge.pbx.zadarma.protocol import KIND

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import AccountConfig, PbxSettings, UserMapping
    from callbridge.pbx.zadarma.settings import ZadarmaSettings

RECORD_REQUEST = "/v1/pbx/record/request/"


def _settings(settings: PbxSettings) -> ZadarmaSettings:
    from callbridge.pbx.zadarma.settings import ZadarmaSettings

    if not isinstance(settings, ZadarmaSettings):
        raise TypeError(f"not Zadarma settings: {settings.kind}")
    return settings


def webhook_tokens(settings: PbxSettings) -> list[str]:
    return [_settings(settings).webhook_secret.get_secret_value()]


def cabinet_lines(config: AccountConfig, base_url: str) -> list[str]:
    account = config.account
    secret = _settings(config.pbx).webhook_secret.get_secret_value()
    return [
        f"account {account}: Zadarma notifications address (every call event, NOTIFY_RECORD too): "
        f"{base_url}/v1/{account}/zadarma/{secret}",
    ]


def recording_fetch_url(account: Account, link: str) -> str:
    """A stored record-request link (calls.recording_link) becomes a fresh temporary download link,
    asked for now: Zadarma's links expire, so none is ever stored."""
    from callbridge.pbx.zadarma.client import for_account

    parts = urlsplit(link)
    base = _settings(account.settings.pbx).api_base
    if f"{parts.scheme}://{parts.netloc}" != base or parts.path != RECORD_REQUEST:
        return link
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return for_account(account).record_link(call_id=query.get("call_id"), pbx_call_id=query.get("pbx_call_id"))


def extension_of(user: UserMapping) -> str | None:
    """The user's extension: the mapping's `extension`, else its pbx_user when that is one."""
    for value in (user.extension, user.pbx_user):
        text = (value or "").strip()
        if text.isascii() and text.isdigit() and 3 <= len(text) <= 5:
            return text
    return None


def dial(account: Account, user: UserMapping, e164: str, clid: str | None) -> str | None:
    """`/v1/request/callback/`: Zadarma rings the user's extension, then dials the number from it
    (`sip`: its caller id, recording and statistics apply). It answers no call id: the click is
    matched to the outgoing call that follows (features/clicktocall, core/clicks.py)."""
    from callbridge.pbx.zadarma.client import ZadarmaError, for_account

    extension = extension_of(user)
    if extension is None:
        raise UnknownUser(f"PBX user {user.pbx_user} has no Zadarma extension")
    number = "".join(ch for ch in e164 if ch.isdigit())
    try:
        for_account(account).callback(extension, number, sip=extension)
    except ZadarmaError as error:
        timed_out = error.transient and error.status is None and "timed out" in str(error)
        raise ClickToCallRefused(
            "the PBX did not answer in time"
            if timed_out
            else f"the PBX refused the call ({error.status or 'no answer'})",
            504 if timed_out else 502,
        ) from None
    return None


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension as the PBX lists it: the API names no person."""

    name: str
    real_name: str | None = None
    ext: str | None = None
    email: str | None = None


def list_users(account: Account) -> list[ListedUser]:
    from callbridge.pbx.zadarma.client import for_account

    return [Extension(name=number, ext=number) for number in for_account(account).internal()]


def lists_users(account: Account) -> bool:
    return True  # the API key is required: every Zadarma account can list its extensions


ADAPTER = PbxAdapter(
    kind=KIND,
    webhook_tokens=webhook_tokens,
    cabinet_lines=cabinet_lines,
    recording_fetch_url=recording_fetch_url,
    capabilities={Dialer: "adapter", UserListing: "adapter", ScheduledJob: "recovery", Backfill: "recovery"},
)
