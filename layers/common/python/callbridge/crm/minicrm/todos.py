"""Callback tasks in MiniCRM: a ToDo on the caller's card, through MiniCRM's general API (`/Api/R3`,
HTTP Basic `system_id:general_api_key`; docs/protocols/minicrm.md, docs/missed-calls.md).

- the caller's contact: `GET /Api/R3/Contact?Phone=…`; his card: `GET /Api/R3/Project?MainContactId=…`
  (the first one). No contact or no card: no ToDo (CallBridge creates no MiniCRM contacts or cards);
- the ToDo: `PUT /Api/R3/ToDo/` with `ProjectId`, `UserId` (the owner's `minicrm_user_id`), `Comment`
  (with our marker), `Deadline` (the account's time zone), `Type` when configured; a retry first
  reads the card's ToDos (`GET /Api/R3/ToDoList/{ProjectId}`) for the marker;
- closing: `PUT /Api/R3/ToDo/{Id}` with `Status: Closed`.

Creates are sent once per try (no in-process retry): a 500 may come after MiniCRM saved.
"""

from __future__ import annotations

import base64
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call
from callbridge.crm.base import CallbackOpened, CallbackRequest, secret
from callbridge.crm.minicrm.settings import MiniCrmSettings, MiniCrmUser
from callbridge.infra.http import HttpPeer, PermanentHttpError, RetryPolicy

TIMEOUT_S = 10.0
DEADLINE = "%Y-%m-%d %H:%M:%S"


def _peer(settings: MiniCrmSettings) -> HttpPeer:
    key = secret(settings, "general_api_key")
    token = base64.b64encode(f"{settings.system_id}:{key}".encode()).decode()
    return HttpPeer(
        "minicrm-r3",
        settings.base_url.rstrip("/"),
        headers={"Authorization": f"Basic {token}"},
        timeout_s=TIMEOUT_S,
        retry=RetryPolicy(attempts=1),
        secrets=(key, token),
    )


def _results(peer: HttpPeer, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A list answer (`{"Count": n, "Results": {id: {…}}}`, or a list) as its items; 404 is none."""
    try:
        body = peer.request("GET", path, params=params).json()
    except PermanentHttpError as error:
        if error.status == 404:
            return []
        raise
    results = body.get("Results") if isinstance(body, dict) else body
    if isinstance(results, dict):
        results = list(results.values())
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def _card(peer: HttpPeer, phone: str) -> int | None:
    for contact in _results(peer, "/Api/R3/Contact", {"Phone": phone}):
        for project in _results(peer, "/Api/R3/Project", {"MainContactId": contact.get("Id")}):
            if isinstance(project.get("Id"), int):
                return int(project["Id"])
    return None


def _user(settings: MiniCrmSettings, owners: list[UserMapping]) -> int | None:
    for owner in owners:
        user_id = MiniCrmUser.of(owner).minicrm_user_id
        if user_id is not None:
            return user_id
    return settings.callbacks.default_user_id


def open_callback_task(account: Account, settings: CrmSettings, request: CallbackRequest) -> CallbackOpened:
    assert isinstance(settings, MiniCrmSettings)
    peer = _peer(settings)
    try:
        project = _card(peer, request.phone)
        if project is None:
            return CallbackOpened(None, skipped="MiniCRM has no card for this number (CallBridge creates none)")
        if request.retry:
            for saved in _results(peer, f"/Api/R3/ToDoList/{project}"):
                if request.marker in str(saved.get("Comment") or "") and saved.get("Id") is not None:
                    return CallbackOpened(str(saved["Id"]))
        user = _user(settings, request.owners)
        if user is None:
            return CallbackOpened(None, skipped="no MiniCRM user for the task (map the owner's minicrm_user_id)")
        zone = ZoneInfo(account.timezone)
        missed_local = request.missed_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        todo: dict[str, Any] = {
            "ProjectId": project,
            "UserId": user,
            "Comment": f"Call back {request.phone}: missed call at {missed_local} ({request.reason}) [{request.marker}]",
            "Deadline": request.due_at.astimezone(zone).strftime(DEADLINE),
        }
        if settings.callbacks.todo_type:
            todo["Type"] = settings.callbacks.todo_type
        answer = peer.request("PUT", "/Api/R3/ToDo/", json=todo).json()
        todo_id = answer.get("Id") if isinstance(answer, dict) else None
        if todo_id is None:
            raise PermanentHttpError("minicrm-r3", "PUT", "/Api/R3/ToDo/", "answer without the new Id", status=None)
        return CallbackOpened(str(todo_id))
    finally:
        peer.close()


def close_callback_task(account: Account, settings: CrmSettings, task_id: str, note: str) -> None:
    """MiniCRM's ToDo has no field for how it was done: it is closed, the note stays ours."""
    assert isinstance(settings, MiniCrmSettings)
    peer = _peer(settings)
    try:
        peer.request("PUT", f"/Api/R3/ToDo/{task_id}", json={"Status": "Closed"})
    finally:
        peer.close()


def new_contact(account: Account, settings: CrmSettings, call: Call, owners: list[UserMapping]) -> bool:
    """CallBridge creates no MiniCRM contacts: a contact needs a card in one of the account's modules."""
    return False
