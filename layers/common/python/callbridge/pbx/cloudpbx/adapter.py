"""The Cloud PBX as a PBX adapter (callbridge.pbx.base): the keys it presents to us, its cabinet
lines, click-to-call (`makeCall`), its user list (`accounts`), and its call history (`history`)
for the scheduled reconciliation and backfill, docs/cloudpbx.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbridge.infra import secrets
from callbridge.pbx.base import (
    Backfill,
    ClickToCallRefused,
    Dialer,
    ListedUser,
    NotConfigured,
    PbxAdapter,
    PbxNotConfigured,
    ScheduledJob,
    UserListing,
)
from callbridge.pbx.cloudpbx.protocol import KIND

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import AccountConfig, PbxSettings, UserMapping
    from callbridge.pbx.cloudpbx.settings import CloudPbxSettings


def _settings(settings: PbxSettings) -> CloudPbxSettings:
    from callbridge.pbx.cloudpbx.settings import CloudPbxSettings

    if not isinstance(settings, CloudPbxSettings):
        raise TypeError(f"not Cloud PBX settings: {settings.kind}")
    return settings


def webhook_tokens(settings: PbxSettings) -> list[str]:
    return [t.get_secret_value() for t in _settings(settings).crm_tokens]


def stored_secrets(settings: PbxSettings) -> dict[str, str | None]:
    """The current and the previous crm_token (a rotation keeps both valid), and our key to its API."""
    pbx = _settings(settings)
    tokens = [t.get_secret_value() for t in pbx.crm_tokens]
    return {
        secrets.CRM_TOKEN: tokens[0],
        secrets.CRM_TOKEN_PREVIOUS: tokens[1] if len(tokens) > 1 else None,
        secrets.PBX_TOKEN: pbx.token.get_secret_value() if pbx.token else None,
    }


def cabinet_lines(config: AccountConfig, base_url: str) -> list[str]:
    account = config.account
    token = _settings(config.pbx).crm_tokens[0].get_secret_value()
    return [
        f"account {account}: Cloud PBX → CRM address: {base_url}/v1/{account}/cloudpbx",
        f"account {account}: Cloud PBX → CRM key (crm_token): {token}",
    ]


def dial(account: Account, user: UserMapping, e164: str, clid: str | None) -> str | None:
    from callbridge.core import clicks
    from callbridge.infra.observability import logger
    from callbridge.pbx.cloudpbx.client import PbxError, for_account

    client = for_account(account)
    if client is None:
        raise NotConfigured("the account's Cloud PBX has no api_url or token")
    try:
        call_id = client.make_call(user.pbx_user, e164, clid=clid)
    except PbxError as error:
        raise ClickToCallRefused(error.message, error.status) from None
    if call_id:
        # The PBX reports no end of an outgoing call but its `history`: that final record of this
        # id closes the click's card (core/clicks.py). Never worth failing the call for.
        try:
            clicks.expect(account.id, user.pbx_user, e164, call_id, named=True)
        except Exception:
            logger().exception("could not keep a click-to-call for the PBX call that answers it")
    return call_id


def list_users(account: Account) -> list[ListedUser]:
    from callbridge.pbx.cloudpbx.client import for_account

    if not _settings(account.settings.pbx).api_url:
        raise PbxNotConfigured(f"account {account.id}: only a Cloud PBX with api_url lists its users")
    client = for_account(account, force=True)
    if client is None:
        raise PbxNotConfigured(f"account {account.id}: the Cloud PBX token is not configured")
    return list(client.accounts())


def lists_users(account: Account) -> bool:
    return bool(_settings(account.settings.pbx).api_url)


ADAPTER = PbxAdapter(
    kind=KIND,
    webhook_tokens=webhook_tokens,
    stored_secrets=stored_secrets,
    cabinet_lines=cabinet_lines,
    capabilities={Dialer: "adapter", UserListing: "adapter", ScheduledJob: "recovery", Backfill: "recovery"},
)
