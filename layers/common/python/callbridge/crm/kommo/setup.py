"""What the operator does in amoCRM (docs/kommo.md), printed by `accounts apply`: the SetupLines
capability (callbridge.crm.base). No secret: only our URLs and the integration's scopes."""

from __future__ import annotations

from callbridge.core.config import AccountConfig, CrmSettings
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import user_id


def setup_lines(config: AccountConfig, settings: CrmSettings, base_url: str) -> list[str]:
    assert isinstance(settings, KommoSettings)
    name = f"account {config.account}: amoCRM ({settings.name})"
    if settings.app is None:
        lines = [f"{name}: private integration with a long-lived token, scope: CRM (crm) and notifications"]
    else:
        lines = [
            f"{name}: integration with the redirect URL {settings.app.redirect_uri}, scopes: crm, notifications",
            f"{name}: then give it its tokens: callbridge kommo authorize {config.account} --crm {settings.name}",
        ]
    lines.append(f"{name}: click-to-call widget (widgets/kommo): upload it, then set its address to {base_url}")
    unmapped = [u.pbx_user for u in config.users if user_id(u) is None]
    if unmapped:
        lines.append(f"{name}: users with no kommo_user_id: {', '.join(unmapped)} (callbridge kommo users)")
    return lines
