"""An account's health stamps (Calls table, pk = HEALTH#{account}): what the operator console's health
screen shows that no call item says on its own.

    sk = CRM#{crm}    last_success_at, last_error_at, last_error    written after each delivery run
    sk = RUN#{job}    ran_at, status                                written after each scheduled job run

In the Calls table because every function that writes them (the delivery workers, the scheduled
jobs) may already write there; one small item per CRM and per job, updated in place, so reading an
account's health is one query, whatever its history.
"""

from __future__ import annotations

import time
from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items
from callbridge.store.keys import health_pk
from callbridge.store.updates import Update

CRM_PREFIX = "CRM#"
RUN_PREFIX = "RUN#"
MAX_ERROR = 500  # a reason longer than this is cut: the screen shows a line, the call keeps the rest


def _update(account: str, sk: str, update: Update) -> None:
    request: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "Key": {"pk": {"S": health_pk(account)}, "sk": {"S": sk}},
    }
    request.update(update.request())
    aws.dynamodb().update_item(**request)


# A success is stamped at most this often per CRM by one warm function: on a busy day the delivery
# runs every few seconds, and the health screen reads "last success" in minutes. An error is always
# stamped at once.
SUCCESS_STAMP_S = 60.0
_stamped: dict[tuple[str, str], float] = {}  # (account, crm) -> when this function last stamped a success


def crm_result(account: str, crm: str, now: str, *, success: bool, error: str = "") -> None:
    """A delivery run's outcome for one CRM: a success, an error (its reason), or both when a run
    delivered some calls and not others."""
    if success and not error:
        last = _stamped.get((account, crm))
        if last is not None and time.monotonic() - last < SUCCESS_STAMP_S:
            return
    if success and not error:
        _stamped[(account, crm)] = time.monotonic()
    else:  # the next success is news: it is stamped at once
        _stamped.pop((account, crm), None)
    update = Update().set(crm=crm)
    if success:
        update.set(last_success_at=now)
    if error:
        update.set(last_error_at=now, last_error=error[:MAX_ERROR])
    _update(account, CRM_PREFIX + crm, update)


def job_run(account: str, job: str, now: str, status: str) -> None:
    """A scheduled job ran for the account (`status`: ok or failed)."""
    _update(account, RUN_PREFIX + job, Update().set(job=job, ran_at=now, status=status))


def stamps(account: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(CRM name -> its stamp, job -> its last run) of one account."""
    request = {
        "TableName": get_settings().calls_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": health_pk(account)}},
    }
    crms: dict[str, dict[str, Any]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    for raw in query_items(request, at_most=200):
        item = from_item(raw)
        sk = str(item.pop("sk", ""))
        item.pop("pk", None)
        if sk.startswith(CRM_PREFIX):
            crms[sk.removeprefix(CRM_PREFIX)] = item
        elif sk.startswith(RUN_PREFIX):
            jobs[sk.removeprefix(RUN_PREFIX)] = item
    return crms, jobs
