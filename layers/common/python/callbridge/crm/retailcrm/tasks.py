"""Callback tasks and customers in retailCRM (the `callback_tasks` capability; docs/missed-calls.md).

- a missed caller: the customer with that phone (`GET customers?filter[name]=`), or none; with
  `callbacks.create_customers`, a new customer for an unknown number (`customers/create`, externalId
  `callbridge-{digits}`, looked up by that externalId first, so a retry finds the one it created);
- the task (`tasks/create`): for the customer's own manager (`managerId`), else the missed-call
  owner, else `default_user_id`; due `callbacks.due_minutes` after the call; linked to the customer;
  our marker in its text. A retry looks for the marker (`GET tasks?filter[text]=`) before creating;
- closing: `tasks/{id}/edit` with `complete: true` and a commentary saying how the client was reached;
- an outgoing call to an unknown number creates its customer for the calling manager; a customer we
  created passes from the missed-call owner to the manager who calls him back
  (`customers/{externalId}/edit`).

Creates are sent once per try (no in-process retry): a 500 or a timeout may come after retailCRM
saved, and only the marker lookup of the next try may tell.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call
from callbridge.core.terms import Outcome, missed_reason_text
from callbridge.crm.base import CallbackOpened, CallbackRequest, secret
from callbridge.crm.retailcrm.api import RetailCrmApi
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.crm.retailcrm.users import retailcrm_user_id
from callbridge.infra.http import RetryPolicy

TIMEOUT_S = 10.0
EXTERNAL_PREFIX = "callbridge-"  # externalId of the customers we create: `callbridge-{digits}`
TASK_DATETIME = "%Y-%m-%d %H:%M"  # retailCRM's task `datetime`, in the account's time zone


def _api(settings: RetailCrmSettings) -> RetailCrmApi:
    return RetailCrmApi(
        settings.base_url,
        secret(settings, "api_key"),
        timeout_s=TIMEOUT_S,
        retry=RetryPolicy(attempts=1),
        trusted_hosts=settings.trusted_hosts,
    )


def _digits(phone: Any) -> str:
    return re.sub(r"\D", "", str(phone or ""))


def _same_number(a: str, b: str) -> bool:
    """Two numbers as people write them (+7 916…, 8 916…): the same when their last ten digits are."""
    da, db = _digits(a), _digits(b)
    return len(da) >= 7 and len(db) >= 7 and da[-10:] == db[-10:]


def find_customer(api: RetailCrmApi, phone: str) -> dict[str, Any] | None:
    for customer in api.customers_by_phone(phone):
        phones = customer.get("phones") or []
        if any(isinstance(p, dict) and _same_number(str(p.get("number") or ""), phone) for p in phones):
            return customer
    return None


def ours(customer: dict[str, Any]) -> bool:
    """A customer we created for an unknown caller: he stays unknown until someone works on him."""
    return str(customer.get("externalId") or "").startswith(EXTERNAL_PREFIX)


def _performer(settings: RetailCrmSettings, customer: dict[str, Any] | None, owners: list[UserMapping]) -> int | None:
    if customer and isinstance(customer.get("managerId"), int):
        return int(customer["managerId"])
    for owner in owners:
        user_id = retailcrm_user_id(owner)
        if user_id is not None:
            return user_id
    return settings.default_user_id


def _ensure_customer(
    api: RetailCrmApi, settings: RetailCrmSettings, phone: str, manager: int | None
) -> tuple[dict[str, Any], bool]:
    external_id = f"{EXTERNAL_PREFIX}{_digits(phone)}"
    existing = api.customer_by_external_id(external_id, settings.site)
    if existing is not None:
        return existing, False
    customer: dict[str, Any] = {"externalId": external_id, "firstName": phone, "phones": [{"number": phone}]}
    if manager is not None:
        customer["managerId"] = manager
    new_id = api.create_customer(customer, settings.site)
    return {**customer, "id": new_id}, True


def open_callback_task(account: Account, settings: CrmSettings, request: CallbackRequest) -> CallbackOpened:
    assert isinstance(settings, RetailCrmSettings)
    api = _api(settings)
    try:
        customer = find_customer(api, request.phone)
        if customer is not None and request.only_unknown and not ours(customer):
            return CallbackOpened(None, skipped="retailCRM knows the number (callbacks only for unknown numbers)")
        created = False
        if customer is None and settings.callbacks.create_customers:
            customer, created = _ensure_customer(
                api, settings, request.phone, _performer(settings, None, request.owners)
            )
        if request.retry:
            for saved in api.tasks_by_text(request.marker):
                if request.marker in str(saved.get("text") or "") and saved.get("id") is not None:
                    return CallbackOpened(str(saved["id"]), customer_created=created)
        performer = _performer(settings, customer, request.owners)
        if performer is None:
            return CallbackOpened(None, skipped="no manager to give the task to (map the owner or set default_user_id)")
        zone = ZoneInfo(account.timezone)
        missed_local = request.missed_at.astimezone(zone).strftime(TASK_DATETIME)
        task: dict[str, Any] = {
            "text": f"Call back {request.phone}: missed call at {missed_local} [{request.marker}]",
            "commentary": f"Missed call: {missed_reason_text(request.reason)}.",
            "datetime": request.due_at.astimezone(zone).strftime(TASK_DATETIME),
            "performerId": performer,
        }
        if customer is not None and isinstance(customer.get("id"), int):
            task["customer"] = {"id": customer["id"]}
        return CallbackOpened(str(api.create_task(task, settings.site)), customer_created=created)
    finally:
        api.close()


def close_callback_task(account: Account, settings: CrmSettings, task_id: str, note: str) -> None:
    assert isinstance(settings, RetailCrmSettings)
    api = _api(settings)
    try:
        api.edit_task(int(task_id), {"complete": True, "commentary": note})
    finally:
        api.close()


def new_contact(account: Account, settings: CrmSettings, call: Call, owners: list[UserMapping]) -> bool:
    """An outgoing call to a number retailCRM does not know creates its customer, for the manager who
    called. A customer we created for an unknown caller stays with the missed-call owner until a
    manager calls him back: then he is that manager's (seed 003 §4.3)."""
    assert isinstance(settings, RetailCrmSettings)
    if not settings.callbacks.create_customers or not call.phone:
        return False
    caller = next((u for u in account.settings.users if u.pbx_user == call.user), None) if call.user else None
    manager = retailcrm_user_id(caller) if caller is not None and call.outcome == Outcome.ANSWERED else None
    api = _api(settings)
    try:
        customer = find_customer(api, call.phone)
        if customer is None:
            _customer, created = _ensure_customer(
                api, settings, call.phone, manager if manager is not None else _performer(settings, None, owners)
            )
            return created
        if ours(customer) and manager is not None and customer.get("managerId") != manager:
            api.edit_customer(str(customer["externalId"]), {"managerId": manager}, settings.site)
        return False
    finally:
        api.close()
