"""Which PBX user a Cloud PBX record names: the PBX writes a user as `login` or `login@tenant`
(docs/protocols/cloudpbx.md, "Beyond the basic protocol"; its history CSV always has the tenant),
while an account file maps users by login. Every path that takes a user from the PBX (webhooks,
reconciliation, backfill) goes through `pbx_user`, so one call has one user and one source marker
whichever path stored it."""

from __future__ import annotations

from callbridge.core.accounts import Account


def pbx_user(account: Account, sent: str) -> str:
    """`login@tenant` as `login`, unless the account file maps `login@tenant` itself; a department
    (`g_<uuid>@tenant`) and a user without a tenant stay as sent."""
    if "@" not in sent or sent.startswith("g_"):
        return sent
    if any(m.pbx_user == sent for m in account.settings.users):
        return sent
    login = sent.split("@", 1)[0]
    return login or sent
