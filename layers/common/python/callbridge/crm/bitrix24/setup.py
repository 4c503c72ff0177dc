"""What the operator pastes into the Bitrix24 portal (docs/bitrix24.md), printed by `accounts apply`:
the SetupLines capability (callbridge.crm.base). No secret, only our URL and the scopes."""

from __future__ import annotations

from callbridge.core.config import AccountConfig, CrmSettings
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.crm.bitrix24.users import identity


def setup_lines(config: AccountConfig, settings: CrmSettings, base_url: str) -> list[str]:
    assert isinstance(settings, Bitrix24Settings)
    name = f"account {config.account}: Bitrix24 ({settings.name})"
    if settings.app is None:
        lines = [f"{name}: inbound webhook scopes: telephony, crm, user"]
    else:
        lines = [
            f"{name}: local application, uses only API, scopes: telephony, crm, user",
            f"{name}: then give it its tokens: callbridge bitrix24 authorize {config.account} --crm {settings.name}",
        ]
    if settings.application_token is not None:
        handler = f"{base_url}/v1/{config.account}/bitrix24/make-call"
        lines.append(f"{name}: local application, event.bind OnExternalCallStart handler: {handler}")
        lines.append(f"{name}: choose the application as the default outgoing line (Telephony settings)")
    unmapped = [u.pbx_user for u in config.users if identity(u) is None]
    if unmapped:
        lines.append(f"{name}: users with no bitrix24_user_id nor inner phone: {', '.join(unmapped)}")
    return lines
