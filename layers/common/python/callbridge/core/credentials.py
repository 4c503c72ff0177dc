"""Checking a secret a caller presents that lives in SSM (API keys, click-to-call secrets, the
recordings' credentials), with the same cost whether the account exists or not.

The account item is read every few seconds (core/accounts.py, settings.credential_cache_s) and
carries the version of the account's secrets: secrets cached under an older version are read
again (infra/secrets.py), so a key removed by an apply stops working within those seconds, while
SSM is read only when an apply changed something - never because a caller presented a wrong key.
A key that does not match makes the account be rechecked (one DynamoDB read within a budget, the
same as for an account that does not exist), so a key applied a moment ago works at once.
"""

from __future__ import annotations

from collections.abc import Callable

from callbridge.core.accounts import Account, Lookup, lookup, recheck
from callbridge.infra import secrets


def known(account_id: str) -> Account | None:
    """The account, or None when there is none - after the work a wrong key costs on a known one
    (a recheck), so that the refusal does not tell which accounts exist."""
    seen = lookup(account_id)
    if seen.account is None:
        seen = recheck(seen)
    return seen.account


def secrets_match(account: Account, check: Callable[[dict[str, str]], bool], *, under: str = "") -> Account | None:
    """The account (as rechecked, when it changed) whose secrets (`under`: infra/secrets.py
    account_secrets) pass `check`; None otherwise."""
    if check(secrets.account_secrets(account.id, under=under, version=account.version)):
        return account
    again = recheck(Lookup.of(account))
    if again.account is None or again.account.version == account.version:
        return None
    fresh = secrets.account_secrets(account.id, under=under, version=again.account.version)
    return again.account if check(fresh) else None
