"""Callback to-dos in Bitrix24 (the `callback_tasks` capability; docs/bitrix24.md, "Callback to-dos",
and docs/missed-calls.md).

- the caller's CRM entity: `telephony.externalCall.searchCrmEntities` with his number; a contact
  first, then a company, then a lead (with `crm_create`, the lead Bitrix24 made when the missed call
  was registered: the callback work runs after the call was filed). Nothing found (an unknown number
  and `crm_create: false`): a to-do needs an entity to sit on, so none is opened (`skipped`);
- the to-do: `crm.activity.todo.add` on that entity (`ownerTypeId` 3 contact, 4 company, 1 lead)
  for the entity's responsible user (`ASSIGNED_BY_ID`), else the first owner the account maps to a
  `bitrix24_user_id`, else `default_user_id`; `deadline` = the due time; our marker in its
  description. A retry first lists the entity's to-dos (`crm.activity.list`, newest first) for the
  marker, and creates one only if there is none;
- closing: `crm.activity.update` with `COMPLETED: Y` (closing a closed to-do changes nothing).

The create is sent once per try (`repeatable=False`: only the portal's limit error, which comes
before it does anything, is retried in process): a 500 or a timeout may come after Bitrix24 saved,
and only the marker lookup of the next try may tell.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call
from callbridge.core.terms import missed_reason_text
from callbridge.crm.base import CallbackOpened, CallbackRequest
from callbridge.crm.bitrix24.api import Bitrix24Api, open_api
from callbridge.crm.bitrix24.calls import bitrix_time
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.crm.bitrix24.users import user_id
from callbridge.infra.http import PermanentHttpError

TIMEOUT_S = 10.0
# Bitrix24's CRM object types (crm.enum.ownertype), in the order a to-do prefers them.
OWNER_TYPES = {"CONTACT": 3, "COMPANY": 4, "LEAD": 1}
KNOWN = ("CONTACT", "COMPANY")  # a lead is a number nobody has worked on yet: still unknown
TODO_PROVIDER = "CRM_TODO"  # the provider of the activities crm.activity.todo.add makes
LOOKUP_PAGE = 50  # crm.activity.list answers 50 a page; our to-do is among the entity's newest


def _api(account: Account, settings: Bitrix24Settings) -> Bitrix24Api:
    return open_api(account.id, settings, timeout_s=TIMEOUT_S)


def _entity(api: Bitrix24Api, phone: str) -> tuple[dict[str, Any] | None, bool]:
    """The entity a to-do goes on (contact, company, then lead), and whether the number is known
    (Bitrix24 has a contact or company with it)."""
    found = api.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": phone})
    entities = [e for e in (found if isinstance(found, list) else []) if isinstance(e, dict)]
    usable = [e for e in entities if str(e.get("CRM_ENTITY_TYPE") or "").upper() in OWNER_TYPES
              and str(e.get("CRM_ENTITY_ID") or "").isdigit()]  # fmt: skip
    usable.sort(key=lambda e: list(OWNER_TYPES).index(str(e["CRM_ENTITY_TYPE"]).upper()))
    known = any(str(e.get("CRM_ENTITY_TYPE") or "").upper() in KNOWN for e in entities)
    return (usable[0] if usable else None), known


def _responsible(settings: Bitrix24Settings, entity: dict[str, Any], owners: list[UserMapping]) -> int | None:
    by = entity.get("ASSIGNED_BY")
    assigned = by.get("ID") if isinstance(by, dict) else None
    assigned = assigned if assigned not in (None, "") else entity.get("ASSIGNED_BY_ID")
    if str(assigned or "").isdigit() and int(str(assigned)) > 0:
        return int(str(assigned))
    for owner in owners:
        found = user_id(owner)
        if found is not None:
            return found
    return settings.default_user_id


def _saved(api: Bitrix24Api, owner: tuple[int, int], marker: str) -> str | None:
    """The id of the to-do with our marker on this entity, if an earlier try saved it."""
    params = {
        "filter": {"OWNER_TYPE_ID": owner[0], "OWNER_ID": owner[1], "PROVIDER_ID": TODO_PROVIDER},
        "order": {"ID": "DESC"},
        "select": ["ID", "SUBJECT", "DESCRIPTION"],
    }
    found = api.call("crm.activity.list", params)
    for activity in found if isinstance(found, list) else []:
        text = (
            f"{activity.get('SUBJECT') or ''} {activity.get('DESCRIPTION') or ''}" if isinstance(activity, dict) else ""
        )
        if marker in text and activity.get("ID") not in (None, ""):
            return str(activity["ID"])
    return None


def open_callback_task(account: Account, settings: CrmSettings, request: CallbackRequest) -> CallbackOpened:
    assert isinstance(settings, Bitrix24Settings)
    api = _api(account, settings)
    try:
        entity, known = _entity(api, request.phone)
        if known and request.only_unknown:
            return CallbackOpened(None, skipped="Bitrix24 knows the number (callbacks only for unknown numbers)")
        if entity is None:
            why = "crm_create is off" if not settings.crm_create else "the portal made no lead for it"
            return CallbackOpened(None, skipped=f"Bitrix24 has no contact, company or lead with this number ({why})")
        owner = (OWNER_TYPES[str(entity["CRM_ENTITY_TYPE"]).upper()], int(str(entity["CRM_ENTITY_ID"])))
        if request.retry and (saved := _saved(api, owner, request.marker)):
            return CallbackOpened(saved)
        responsible = _responsible(settings, entity, request.owners)
        if responsible is None:
            return CallbackOpened(None, skipped="no Bitrix24 user for the to-do (map the owner or set default_user_id)")
        missed_local = request.missed_at.astimezone(ZoneInfo(account.timezone)).strftime("%Y-%m-%d %H:%M")
        todo: dict[str, Any] = {
            "ownerTypeId": owner[0],
            "ownerId": owner[1],
            "deadline": bitrix_time(request.due_at),
            "title": f"Call back {request.phone}",
            "description": f"Missed call at {missed_local}: {missed_reason_text(request.reason)}. [{request.marker}]",
            "responsibleId": responsible,
        }
        answer = api.call("crm.activity.todo.add", todo, repeatable=False)
        todo_id = answer.get("id") if isinstance(answer, dict) else None
        if todo_id in (None, ""):
            raise PermanentHttpError(
                "bitrix24", "POST", "crm.activity.todo.add", "answer without the new id", status=None
            )
        return CallbackOpened(str(todo_id))
    finally:
        api.close()


def close_callback_task(account: Account, settings: CrmSettings, task_id: str, note: str) -> None:
    """The to-do is completed; how the client was reached stays ours (`callbridge calls show`):
    `crm.activity.update` would replace the description, not add to it."""
    assert isinstance(settings, Bitrix24Settings)
    api = _api(account, settings)
    try:
        api.call("crm.activity.update", {"id": int(task_id), "fields": {"COMPLETED": "Y"}})
    finally:
        api.close()


def new_contact(account: Account, settings: CrmSettings, call: Call, owners: list[UserMapping]) -> bool:
    """Bitrix24 makes the entity itself: a call registered with `crm_create` creates a lead for a
    number its CRM does not know, outgoing or incoming (docs/protocols/bitrix24.md)."""
    return False
