"""PBX users: who a PBX user is in every other system (the account's `users` mapping), and the PBX's
own list of its users (Cloud PBX `accounts`, specs/cloudpbx.md), kept in sync on a schedule.

Accounts table items:
- `USER#{pbx_user}`: a mapped user, written from the account file; the sync adds `seen_in_pbx`,
  `real_name`, `pbx_ext`, `email`, `synced_at` and never touches the mapping itself.
- `PBXUSER#{name}`: a user the PBX listed in the last sync that no mapping names. Listed for the
  operator (`callbridge users unmapped`, metric `UnmappedPbxUsers`), never matched by guesswork.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callbridge.core.accounts import Account, account_key, get_account
from callbridge.infra import aws, clock
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, to_item, to_value

MAPPED_PREFIX = "USER#"
UNMAPPED_PREFIX = "PBXUSER#"


def mapped_users(account: Account) -> list[dict[str, Any]]:
    """The account's user mapping, from the cached account item (no extra read)."""
    users = account.config.get("users") or []
    return [u for u in users if isinstance(u, dict) and u.get("pbx_user")]


def retailcrm_code(user: Mapping[str, Any]) -> str | None:
    code = user.get("retailcrm_code") or user.get("extension")
    return str(code) if code not in (None, "") else None


def find_user(
    account: Account,
    *,
    pbx_user: str | None = None,
    extension: str | None = None,
    crm_code: str | None = None,
    retailcrm_user_id: str | int | None = None,
) -> dict[str, Any] | None:
    """The mapped user matching the first given key (in the order of the parameters)."""
    users = mapped_users(account)
    if pbx_user:
        return next((u for u in users if u["pbx_user"] == pbx_user), None)
    if extension:
        return next((u for u in users if str(u.get("extension") or "") == extension), None)
    if crm_code:
        found = next((u for u in users if retailcrm_code(u) == crm_code), None)
        if found or retailcrm_user_id in (None, ""):
            return found
    if retailcrm_user_id not in (None, ""):
        wanted = str(retailcrm_user_id)
        return next((u for u in users if str(u.get("retailcrm_user_id") or "") == wanted), None)
    return None


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
    """The account's PBX has no user list we can read (not a Cloud PBX, or no API address/token)."""


def sync_users(account_id: str) -> SyncReport:
    from callbridge.infra import secrets
    from callbridge.pbx.cloudpbx.client import CloudPbxClient

    account = get_account(account_id, refresh=True)
    pbx = account.config.get("pbx") or {}
    if account.pbx_kind != "cloudpbx" or not pbx.get("api_url"):
        raise SyncNotPossible(f"account {account_id}: only a Cloud PBX with api_url lists its users")
    token = secrets.account_secrets(account_id, force=True).get(secrets.PBX_TOKEN)
    if not token:
        raise SyncNotPossible(f"account {account_id}: the Cloud PBX token is not configured")
    listed = CloudPbxClient(str(pbx["api_url"]), token, timeout_s=get_settings().pbx_timeout_s).accounts()
    return store_sync(account, listed)


def store_sync(account: Account, listed: Iterable[Any]) -> SyncReport:
    """Record one `accounts` answer: mapped users get what the PBX says about them, the others are
    (re)listed as unmapped and the ones the PBX no longer lists are dropped from that list."""
    settings = get_settings()
    client = aws.dynamodb()
    now = clock.iso(clock.now())
    pk = account_key(account.id)["pk"]
    mapped = {u["pbx_user"] for u in mapped_users(account)}
    report = SyncReport(account=account.id)
    seen: set[str] = set()
    for user in listed:
        report.pbx_users += 1
        seen.add(user.name)
        facts = {"real_name": user.real_name, "pbx_ext": user.ext, "email": user.email}
        if user.name in mapped:
            report.mapped_seen.append(user.name)
            names = {"#seen": "seen_in_pbx", "#at": "synced_at"}
            values: dict[str, Any] = {":seen": to_value(True), ":at": to_value(now)}
            sets = ["#seen = :seen", "#at = :at"]
            removes = []
            for i, (name, value) in enumerate(facts.items()):
                names[f"#f{i}"] = name
                if value is None:
                    removes.append(f"#f{i}")
                else:
                    values[f":f{i}"] = to_value(value)
                    sets.append(f"#f{i} = :f{i}")
            expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
            client.update_item(
                TableName=settings.accounts_table,
                Key={"pk": pk, "sk": {"S": MAPPED_PREFIX + user.name}},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        else:
            report.unmapped.append(user.name)
            client.put_item(
                TableName=settings.accounts_table,
                Item={
                    "pk": pk,
                    "sk": {"S": UNMAPPED_PREFIX + user.name},
                    **to_item({"name": user.name, **facts, "synced_at": now}),
                },
            )
    for name in sorted(mapped - seen):
        report.mapped_missing.append(name)
        client.update_item(
            TableName=settings.accounts_table,
            Key={"pk": pk, "sk": {"S": MAPPED_PREFIX + name}},
            UpdateExpression="SET seen_in_pbx = :no, synced_at = :at",
            ExpressionAttributeValues={":no": to_value(False), ":at": to_value(now)},
        )
    for item in _query_prefix(account.id, UNMAPPED_PREFIX):
        if item["name"] not in seen or item["name"] in mapped:
            client.delete_item(TableName=settings.accounts_table, Key={"pk": pk, "sk": {"S": item["sk"]}})
    return report


def unmapped_users(account_id: str) -> list[dict[str, Any]]:
    """PBX users of the last sync that no mapping names."""
    return [
        {k: v for k, v in item.items() if k not in ("pk", "sk")} for item in _query_prefix(account_id, UNMAPPED_PREFIX)
    ]


def stored_users(account_id: str) -> list[dict[str, Any]]:
    """Mapped users as stored, with what the last sync learnt about them."""
    return [
        {k: v for k, v in item.items() if k not in ("pk", "sk")} for item in _query_prefix(account_id, MAPPED_PREFIX)
    ]


def _query_prefix(account_id: str, prefix: str) -> list[dict[str, Any]]:
    client = aws.dynamodb()
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": get_settings().accounts_table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": account_key(account_id)["pk"], ":prefix": {"S": prefix}},
    }
    while True:
        page = client.query(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def syncable_accounts() -> list[str]:
    """Every account whose PBX lists its users (a Cloud PBX with an API address)."""
    client = aws.dynamodb()
    found: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": get_settings().accounts_table,
        "FilterExpression": "sk = :config AND pbx_kind = :kind",
        "ExpressionAttributeValues": {":config": {"S": "CONFIG"}, ":kind": {"S": "cloudpbx"}},
        "ProjectionExpression": "account, #config.pbx.api_url",
        "ExpressionAttributeNames": {"#config": "config"},
    }
    while True:
        page = client.scan(**kwargs)
        for raw in page.get("Items", []):
            item = from_item(raw)
            if (item.get("config") or {}).get("pbx", {}).get("api_url") and item.get("account"):
                found.append(str(item["account"]))
        if "LastEvaluatedKey" not in page:
            return sorted(found)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
