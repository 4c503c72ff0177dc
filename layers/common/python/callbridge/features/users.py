"""PBX users: who a PBX user is in every other system (the account's `users` mapping), and the PBX's
own list of its users (its `UserListing` capability, e.g. Cloud PBX `accounts`, docs/cloudpbx.md),
kept in sync on a schedule (store/users.py keeps them).

A user the PBX lists that no mapping names is listed for the operator (`callbridge users unmapped`,
metric `UnmappedPbxUsers`), never matched by guesswork.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from callbridge import registry
from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.features.schedules import each_account
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.pbx.base import ListedUser, PbxFailure, PbxNotConfigured, UserListing
from callbridge.store import users
from callbridge.store.accounts import list_accounts

__all__ = [
    "SyncNotPossible",
    "SyncReport",
    "stored_users",
    "sync_users",
    "syncable_accounts",
    "unmapped_users",
]


# -- sync ----------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    account: str
    pbx_users: int = 0
    mapped_seen: list[str] = field(default_factory=list)
    mapped_missing: list[str] = field(default_factory=list)  # in the mapping, not in the PBX
    unmapped: list[str] = field(default_factory=list)  # in the PBX, in no mapping

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "pbx_users": self.pbx_users,
            "mapped_seen": self.mapped_seen,
            "mapped_missing": self.mapped_missing,
            "unmapped": self.unmapped,
        }


class SyncNotPossible(RuntimeError):
    """The account's PBX has no user list we can read (no such capability, or no API address/key)."""


def sync_users(account_id: str) -> SyncReport:
    account = get_account(account_id, refresh=True)
    listing = registry.pbx_capability(account.pbx_kind, UserListing)
    if listing is None:
        raise SyncNotPossible(f"account {account_id}: its PBX does not list its users")
    try:
        listed = listing.list_users(account)
    except PbxNotConfigured as error:
        raise SyncNotPossible(str(error)) from None
    return store_sync(account, listed)


def store_sync(account: Account, listed: Iterable[ListedUser]) -> SyncReport:
    """Record one user list: mapped users get what the PBX says about them, the others are
    (re)listed as unmapped and the ones the PBX no longer lists are dropped from that list."""
    now = clock.iso(clock.now())
    mapped = {u.pbx_user for u in account.settings.users}
    report = SyncReport(account=account.id)
    seen: set[str] = set()
    for user in listed:
        report.pbx_users += 1
        seen.add(user.name)
        facts = {"real_name": user.real_name, "pbx_ext": user.ext, "email": user.email}
        if user.name in mapped:
            report.mapped_seen.append(user.name)
            users.mark_seen(account.id, user.name, facts, now)
        else:
            report.unmapped.append(user.name)
            users.put_unmapped(account.id, user.name, {"name": user.name, **facts, "synced_at": now})
    for name in sorted(mapped - seen):
        report.mapped_missing.append(name)
        users.mark_missing(account.id, name, now)
    for item in users.unmapped(account.id):
        if item["name"] not in seen or item["name"] in mapped:
            users.delete_unmapped(account.id, str(item["name"]))
    return report


def unmapped_users(account_id: str) -> list[dict[str, Any]]:
    """PBX users of the last sync that no mapping names."""
    return users.unmapped(account_id)


def stored_users(account_id: str) -> list[dict[str, Any]]:
    """Mapped users as stored, with what the last sync learnt about them."""
    return users.mapped(account_id)


def syncable_accounts() -> list[str]:
    """Every account whose PBX lists its users and whose settings let it (e.g. an API address)."""
    found: list[str] = []
    for kind in sorted(registry.PBX):
        listing = registry.pbx_capability(kind, UserListing)
        if listing is None:
            continue
        for account_id in list_accounts(kind):
            try:
                account = get_account(account_id)
            except UnknownAccount:
                continue
            if listing.lists_users(account):
                found.append(account_id)
    return sorted(found)


def run_sync(named: list[str] | None = None) -> dict[str, Any]:
    """One sync run over `named` accounts, or every account whose PBX lists its users. One account's
    failure (PBX down, bad token) is reported and does not stop the others; unmapped users are
    counted in the metric `UnmappedPbxUsers` (dimension `account`) and logged for the operator."""
    synced: dict[str, Any] = {}
    failed: dict[str, str] = {}
    targets = named if named is not None else syncable_accounts()
    for account, outcome in each_account(targets, sync_users, (UnknownAccount, PbxFailure, SyncNotPossible)):
        if isinstance(outcome, UnknownAccount):
            failed[account] = "unknown account"
            continue
        if isinstance(outcome, Exception):
            failed[account] = str(outcome)
            logger().warning("PBX user sync failed", extra={"account": account, "reason": str(outcome)})
            continue
        synced[account] = outcome.as_dict()
        with single_metric(
            name="UnmappedPbxUsers", unit=MetricUnit.Count, value=len(outcome.unmapped), namespace="CallBridge"
        ) as metric:
            metric.add_dimension(name="account", value=account)
        if outcome.unmapped:
            logger().warning("PBX users without a mapping", extra={"account": account, "unmapped": outcome.unmapped})
    return {"synced": synced, "failed": failed}
