"""telediscount as a PBX adapter (callbridge.pbx.base), docs/telediscount.md: its webhook secret,
cabinet lines, click-to-call (`outcome`), the reconciliation job, backfill (`get_calls`) and the
recording link that gets the account's API key at fetch time only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callbridge.infra import secrets
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.base import (
    Backfill,
    ClickToCallRefused,
    Dialer,
    NotConfigured,
    PbxAdapter,
    ScheduledJob,
    UnknownUser,
)
from callbridge.pbx.telediscount.protocol import SOURCE

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import AccountConfig, PbxSettings, UserMapping
    from callbridge.pbx.telediscount.settings import TelediscountSettings


def _settings(settings: PbxSettings) -> TelediscountSettings:
    from callbridge.pbx.telediscount.settings import TelediscountSettings

    if not isinstance(settings, TelediscountSettings):
        raise TypeError(f"not telediscount settings: {settings.kind}")
    return settings


def webhook_tokens(settings: PbxSettings) -> list[str]:
    return [_settings(settings).webhook_secret.get_secret_value()]


def cabinet_lines(config: AccountConfig, base_url: str) -> list[str]:
    account = config.account
    secret = _settings(config.pbx).webhook_secret.get_secret_value()
    hooks = f"{base_url}/v1/{account}/telediscount/{secret}"
    return [
        f"account {account}: telediscount webhook 'start of incoming call': {hooks}/incoming",
        f"account {account}: telediscount webhook 'call completed': {hooks}/finished",
    ]


def recording_fetch_url(account: Account, link: str) -> str:
    """A get_record link is stored without the account's API key; the key is added here, at fetch
    time only, so it never sits in the calls table or a log line."""
    from callbridge.pbx.telediscount.client import TelediscountApi
    from callbridge.pbx.telediscount.ingest import api_url

    base = api_url(account).rstrip("/") + "/get_record?"
    if not link.startswith(base):
        return link
    key = secrets.account_secrets(account.id, under=secrets.PBX, version=account.version).get(
        secrets.pbx_secret_name("api_key"), ""
    )
    return TelediscountApi(api_url=api_url(account), api_key=key).with_key(link) if key else link


def dial(account: Account, user: UserMapping, e164: str, clid: str | None) -> str | None:
    """`num_a` is the user's SIP account, `num_b` the number in universal format (digits, country
    code first)."""
    from callbridge.pbx.telediscount.client import TelediscountApi, TelediscountError, universal_number
    from callbridge.pbx.telediscount.ingest import api_url, record_dialled
    from callbridge.pbx.telediscount.settings import TelediscountUser

    sip = TelediscountUser.of(user).sip_account
    if not sip:
        raise UnknownUser(f"PBX user {user.pbx_user} has no sip_account in the mapping")
    api_key = secrets.account_secrets(account.id, under=secrets.PBX, version=account.version).get(
        secrets.pbx_secret_name("api_key")
    )
    if not api_key:
        raise NotConfigured("the account's telediscount PBX has no api_url or api_key")
    api = TelediscountApi(
        api_url(account),
        api_key,
        timeout_s=float(get_settings().pbx_timeout_s),
        trusted_hosts=account.settings.pbx.trusted_hosts,
    )
    try:
        answer = api.outcome(str(sip), universal_number(e164))
    except TelediscountError as error:
        timed_out = error.transient and error.status is None and "timed out" in str(error)
        status = 504 if timed_out else 502
        reason = "did not answer in time" if timed_out else f"refused the call ({error.status or 'no answer'})"
        raise ClickToCallRefused(f"the PBX {reason}", status) from None
    refusal = outcome_refusal(answer)
    if refusal:
        raise ClickToCallRefused(f"the PBX refused the call: {refusal}", 502)
    call_id = str(answer.get("api_call_id") or answer.get("call_id") or "").strip()
    if not call_id:
        return None
    try:
        # No webhook tells of an outgoing call's start: keep it, for its card and the reconciliation.
        record_dialled(account, call_id, user.pbx_user, e164)
    except Exception:  # the call is under way whatever we could keep of it
        logger().exception("could not keep a telediscount click-to-call call")
    return call_id


def outcome_refusal(answer: dict[str, Any]) -> str | None:
    """The PBX documents no answer body: a 200 is acceptance unless it says otherwise."""
    error = answer.get("error") or answer.get("errors")
    if error:
        return str(error)[:200]
    if answer.get("success") is False or str(answer.get("status", "")).lower() in ("error", "fail", "failed"):
        return str(answer.get("message") or answer.get("status") or "error")[:200]
    return None


ADAPTER = PbxAdapter(
    kind=SOURCE,
    webhook_tokens=webhook_tokens,
    cabinet_lines=cabinet_lines,
    recording_fetch_url=recording_fetch_url,
    capabilities={Dialer: "adapter", ScheduledJob: "reconcile", Backfill: "backfill"},
)
