"""Callback tasks in amoCRM (the `callback_tasks` capability; docs/kommo.md, "Callback tasks", and
docs/missed-calls.md).

- the caller's card: his contact (`GET /api/v4/contacts?query=`), else the incoming lead our
  delivery made for him (callbridge.crm.kommo.connector; unsorted contacts are not searchable).
  Neither (a number amoCRM does not know and `unknown_numbers: skip`): a task needs a card, none
  is opened (`skipped`);
- the task: `POST /api/v4/tasks`, type 1 (a call), for the contact's responsible user, else the
  first owner the account maps to a `kommo_user_id`, else `default_user_id`; `complete_till` = the
  due time; our marker in its text. A retry first lists the card's open tasks for the marker and
  creates one only if there is none. The create is sent once per try (callbridge.crm.kommo.api,
  `once`): a 5xx or a timeout may come after amoCRM saved it, and only the next try's lookup tells;
- closing: `PATCH /api/v4/tasks/{id}` with `is_completed` and the result text.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call
from callbridge.core.terms import missed_reason_text
from callbridge.crm.base import CallbackOpened, CallbackRequest, with_secrets
from callbridge.crm.kommo.api import KommoApi, open_api
from callbridge.crm.kommo.calls import LEAD, caller_key
from callbridge.crm.kommo.managers import find_contact
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import user_id
from callbridge.infra.http import UnexpectedAnswer
from callbridge.store import crm_calls

TIMEOUT_S = 10.0
CALL_TASK = 1  # amoCRM's predefined task type "call" (docs/protocols/kommo.md, "Where sources disagree")


def _api(account: Account, settings: KommoSettings) -> KommoApi:
    filled = with_secrets(account.id, settings)
    assert isinstance(filled, KommoSettings)
    return open_api(account.id, filled, timeout_s=TIMEOUT_S)


def _card(
    account: Account, settings: KommoSettings, api: KommoApi, phone: str
) -> tuple[tuple[str, int] | None, dict[str, Any] | None]:
    """(entity type, id) of the card a task goes on, and the contact when amoCRM knows the number."""
    contact = find_contact(api, phone)
    if contact is not None and str(contact.get("id") or "").isdigit():
        return ("contacts", int(str(contact["id"]))), contact
    caller = crm_calls.get(account.id, caller_key(phone), settings.name) or {}
    if str(caller.get(LEAD) or "").isdigit():
        return ("leads", int(str(caller[LEAD]))), None
    return None, None


def _responsible(settings: KommoSettings, contact: dict[str, Any] | None, owners: list[UserMapping]) -> int | None:
    assigned = contact.get("responsible_user_id") if contact else None
    if isinstance(assigned, int) and assigned > 0:
        return assigned
    for owner in owners:
        found = user_id(owner)
        if found is not None:
            return found
    return settings.default_user_id


def _saved(api: KommoApi, card: tuple[str, int], marker: str) -> str | None:
    """The id of the open task with our marker on this card, if an earlier try saved it."""
    params = {"filter[entity_type]": card[0], "filter[entity_id]": card[1], "filter[is_completed]": 0}
    for task in api.pages("/api/v4/tasks", "tasks", params, limit=4):
        if marker in str(task.get("text") or "") and task.get("id") not in (None, ""):
            return str(task["id"])
    return None


def open_callback_task(account: Account, settings: CrmSettings, request: CallbackRequest) -> CallbackOpened:
    assert isinstance(settings, KommoSettings)
    api = _api(account, settings)
    try:
        card, contact = _card(account, settings, api, request.phone)
        if contact is not None and request.only_unknown:
            return CallbackOpened(None, skipped="amoCRM knows the number (callbacks only for unknown numbers)")
        if card is None:
            return CallbackOpened(None, skipped="amoCRM has no contact nor incoming lead with this number")
        if request.retry and (saved := _saved(api, card, request.marker)):
            return CallbackOpened(saved)
        responsible = _responsible(settings, contact, request.owners)
        if responsible is None:
            return CallbackOpened(None, skipped="no amoCRM user for the task (map the owner or set default_user_id)")
        missed_local = request.missed_at.astimezone(ZoneInfo(account.timezone)).strftime("%Y-%m-%d %H:%M")
        task = {
            "task_type_id": CALL_TASK,
            "text": f"Call back {request.phone}: missed at {missed_local}, {missed_reason_text(request.reason)}. "
            f"[{request.marker}]",
            "complete_till": int(request.due_at.timestamp()),
            "entity_type": card[0],
            "entity_id": card[1],
            "responsible_user_id": responsible,
            "request_id": "0",
        }
        answer = api.request("POST", "/api/v4/tasks", body=[task], once=True)
        made = api.embedded(answer, "tasks", "POST", "/api/v4/tasks")
        if not made or made[0].get("id") in (None, ""):
            raise UnexpectedAnswer("kommo", "POST", "/api/v4/tasks", "the answer names no task")
        return CallbackOpened(str(made[0]["id"]))
    finally:
        api.close()


def close_callback_task(account: Account, settings: CrmSettings, task_id: str, note: str) -> None:
    """The task is done, with how the client was reached as its result; closing a closed task
    changes nothing."""
    assert isinstance(settings, KommoSettings)
    api = _api(account, settings)
    try:
        body = {"is_completed": True, "result": {"text": note[:500] or "The client was reached"}}
        api.request("PATCH", f"/api/v4/tasks/{int(task_id)}", body=body)
    finally:
        api.close()


def new_contact(account: Account, settings: CrmSettings, call: Call, owners: list[UserMapping]) -> bool:
    """The delivery makes it: an outgoing call to a number amoCRM does not know makes its contact
    (`unknown_numbers: lead`; callbridge.crm.kommo.connector)."""
    return False
