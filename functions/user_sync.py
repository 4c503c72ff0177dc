"""Scheduled PBX user sync (callbridge.features.users): the PBX's user list (e.g. Cloud PBX `accounts`)
for every account whose PBX lists its users, or for `{"accounts": [...]}` when the event names them
(on demand).

Users the PBX lists but no mapping names are stored for `callbridge users unmapped` and counted in
the metric `UnmappedPbxUsers` (dimension `account`): an operator maps them, nothing guesses.
One account's failure (PBX down, bad token) is reported and does not stop the others.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from callbridge.core.accounts import UnknownAccount
from callbridge.features.schedules import each_account
from callbridge.features.users import SyncNotPossible, sync_users, syncable_accounts
from callbridge.infra.observability import logger
from callbridge.pbx.base import PbxFailure

NAMESPACE = "CallBridge"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    named = event.get("accounts") if isinstance(event, dict) else None
    targets = [str(a) for a in named] if isinstance(named, list) else syncable_accounts()
    synced: dict[str, Any] = {}
    failed: dict[str, str] = {}
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
            name="UnmappedPbxUsers", unit=MetricUnit.Count, value=len(outcome.unmapped), namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="account", value=account)
        if outcome.unmapped:
            logger().warning("PBX users without a mapping", extra={"account": account, "unmapped": outcome.unmapped})
    return {"synced": synced, "failed": failed}
