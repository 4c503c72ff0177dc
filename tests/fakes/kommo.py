"""Fake amoCRM / Kommo account (docs/protocols/kommo.md): the API v4 methods CallBridge uses,
answering in amoCRM's shapes (`_embedded`, problem+json errors, 204 for an empty list) and checking
every request against our notes:
- auth: `Authorization: Bearer` with the long-lived token, or an access token of the OAuth endpoint
  (`POST /oauth2/access_token`: authorization_code, refresh_token - a refresh rotates the refresh
  token and spends the old one; `expire_access()` ends the access tokens now). Anything else: 401;
- the account's limit: more than 7 requests within a second answers 429 with `Retry-After: 1`
  (counted in `throttled`, not a violation: amoCRM answers it, it is no protocol error);
- `POST /api/v4/calls`: each call's fields, types and enums; a call is stored as a note on the
  card whose phone ends in the same last 10 digits (a contact's only active lead, else the contact);
  a number nobody has is refused item by item in `errors`; `uniq` de-duplicates NOTHING: a resent
  call is a second note (`filed()` shows both);
- `POST /api/v4/leads/unsorted/sip` (a second pending entry with the same contact phone is refused,
  as amoCRM does), `GET /api/v4/leads/unsorted`; the contacts of pending entries are not searchable;
- `GET/POST /api/v4/contacts` (`query` searches names and phones), `GET /api/v4/{entity}/notes`
  (`filter[updated_at][from]`), `POST /api/v4/leads/notes`, `POST /api/v2/events` (the ringing
  notification), `GET /api/v4/users`, `GET/POST /api/v4/tasks`, `PATCH /api/v4/tasks/{id}`,
  `GET /api/v4/account`; `reject_lead()` is a manager rejecting an incoming lead (amoCRM deletes it);
- faults: `fail_after_save[path] = n` makes the next n requests to `path` do their work and then
  answer 500 (the answer lost after saving); `refuse_phones` holds numbers a contact has but whose
  calls amoCRM refuses (a card closed to the integration's user).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = 31000001
CLIENT_ID = "0f0e0d0c-0b0a-4909-8807-060504030201"
REDIRECT_URI = "https://bridge.example.com/kommo/oauth"
CALL_FIELDS = {
    "direction", "uniq", "duration", "source", "link", "phone", "call_result", "call_status",
    "responsible_user_id", "created_by", "updated_by", "created_at", "updated_at", "request_id",
}  # fmt: skip
CALL_REQUIRED = {"direction", "duration", "source", "phone"}
NOTE_PARAMS = {"uniq", "duration", "source", "link", "phone", "call_result", "call_status"}
SIP_FIELDS = {"source_uid", "source_name", "pipeline_id", "created_at", "metadata", "_embedded", "request_id"}
SIP_METADATA = {"uniq", "duration", "service_code", "link", "phone", "called_at", "from", "is_call_event_needed"}
TASK_FIELDS = {"task_type_id", "text", "complete_till", "entity_id", "entity_type", "responsible_user_id",
               "request_id", "duration", "created_by", "created_at"}  # fmt: skip
CONTACT_FIELDS = {"name", "first_name", "last_name", "responsible_user_id", "custom_fields_values", "request_id"}
LIMIT_PER_S = 7
URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")


class Refused(Exception):
    """A problem+json answer."""

    def __init__(self, status: int, title: str, detail: str = "", **extra: Any):
        super().__init__(title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def digits10(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())[-10:]


@dataclass
class FakeKommo:
    token: str  # the long-lived token
    users: dict[int, str] = field(default_factory=lambda: {7: "Andy", 9: "Boris"})
    client_secret: str = ""  # set: the OAuth endpoint works (the integration's secret key)
    now: Callable[[], float] = time.time
    refuse_phones: set[str] = field(default_factory=set)
    fail_after_save: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # protocol violations seen
    throttled: int = 0  # 429s answered for the account's limit
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    unsorted: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # ringing notifications
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)  # OAuth access token -> expires (epoch)
    refresh_tokens: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)
    refreshes: int = 0
    _ids: int = 1000
    _window: deque[float] = field(default_factory=deque)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- the account's data ----------------------------------------------------------------------
    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_contact(self, phone: str, name: str = "", responsible: int = 7, *, leads: int = 0) -> int:
        """A contact amoCRM has (searchable), with `leads` active leads of its own."""
        with self._lock:
            contact_id = self.next_id()
            self.contacts[contact_id] = {
                "id": contact_id, "name": name or phone, "responsible_user_id": responsible, "visible": True,
                "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]}],
                "leads": [],
            }  # fmt: skip
            for _ in range(leads):
                lead_id = self.next_id()
                self.leads[lead_id] = {"id": lead_id, "name": f"Deal of {name or phone}", "status": "active"}
                self.contacts[contact_id]["leads"].append(lead_id)
            return contact_id

    def refuse(self, phone: str) -> None:
        """A number amoCRM has a contact for but refuses calls on."""
        self.add_contact(phone)
        self.refuse_phones.add(digits10(phone))

    def filed(self) -> list[dict[str, Any]]:
        """Every call amoCRM holds, once per time it was stored: call notes and unsorted entries."""
        with self._lock:
            found = [
                {**n["params"], "direction": "outbound" if n["note_type"] == "call_out" else "inbound",
                 "responsible_user_id": n["responsible_user_id"], "created_by": n["created_by"],
                 "created_at": n["created_at"], "entity": f"{n['entity_type']}:{n['entity_id']}", "via": "note"}
                for n in self.notes if n["note_type"] in ("call_in", "call_out")
            ]  # fmt: skip
            for entry in self.unsorted:
                if entry["status"] == "declined":
                    continue
                meta = entry["metadata"]
                lead = self.leads[entry["_embedded"]["leads"][0]["id"]]
                found.append({
                    "uniq": meta.get("uniq"), "phone": meta.get("phone"), "duration": meta.get("duration"),
                    "link": meta.get("link"), "direction": "inbound", "created_at": meta.get("called_at"),
                    "responsible_user_id": lead.get("responsible_user_id"),
                    "created_by": lead.get("responsible_user_id"), "entity": f"leads:{lead['id']}", "via": "unsorted",
                })  # fmt: skip
            return found

    def reject_lead(self, lead_id: int) -> None:
        """A manager rejects an incoming lead: amoCRM deletes it, its contact and its calls."""
        with self._lock:
            for entry in self.unsorted:
                if entry["_embedded"]["leads"][0]["id"] == lead_id:
                    entry["status"] = "declined"
            self.leads.pop(lead_id, None)
            self.notes = [n for n in self.notes if (n["entity_type"], n["entity_id"]) != ("leads", lead_id)]

    def authorize(self) -> str:
        """An authorization code, as amoCRM hands the browser after an administrator's consent."""
        code = "def50200" + secrets.token_hex(16)
        self.codes.add(code)
        return code

    def expire_access(self) -> None:
        for token in self.access_tokens:
            self.access_tokens[token] = 0.0

    # -- serving ---------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append((method, path))
            now = self.now()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= LIMIT_PER_S:
                self.throttled += 1
                return self._problem(Refused(429, "Too Many Requests", "7 requests a second"), {"retry-after": "1"})
            self._window.append(now)
            try:
                data = json.loads(body) if body else None
            except ValueError:
                return self._violation(f"{method} {path}: the body is not JSON")
            try:
                if (method, path) == ("POST", "/oauth2/access_token"):
                    return 200, self._oauth(data), {}
                self._auth(headers)
                if method in ("POST", "PATCH") and "application/json" not in headers.get("content-type", ""):
                    raise self._broken(f"{method} {path}: Content-Type must be application/json")
                answer = self._route(method, path, query, data)
            except Refused as refused:
                return self._problem(refused)
            if self._saved_then_failed(path):
                return self._problem(Refused(500, "Internal Server Error", "saved, then failed"))
            if answer is None:
                return 204, b"", {}
            return 200, answer, {"content-type": "application/hal+json"}

    def _saved_then_failed(self, path: str) -> bool:
        key = re.sub(r"/\d+$", "/{id}", path)
        left = self.fail_after_save.get(key, 0)
        if left <= 0:
            return False
        self.fail_after_save[key] = left - 1
        return True

    def _problem(self, refused: Refused, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        body = {"title": refused.title, "type": f"https://httpstatus.es/{refused.status}", "status": refused.status,
                "detail": refused.detail, **refused.extra}  # fmt: skip
        return refused.status, body, {"content-type": "application/problem+json", **(headers or {})}

    def _broken(self, message: str) -> Refused:
        """A request our notes say amoCRM refuses: recorded as a violation and answered 400."""
        self.errors.append(message)
        return Refused(400, "Bad Request", message)

    def _violation(self, message: str) -> tuple[int, Any, dict[str, str]]:
        return self._problem(self._broken(message))

    def _auth(self, headers: dict[str, str]) -> None:
        presented = headers.get("authorization", "")
        token = presented[len("Bearer ") :] if presented.startswith("Bearer ") else ""
        if token and token == self.token:
            return
        if token and self.access_tokens.get(token, 0.0) > self.now():
            return
        raise Refused(401, "Unauthorized", "")

    def _route(self, method: str, path: str, query: dict[str, str], data: Any) -> Any:
        if (method, path) == ("GET", "/api/v4/account"):
            return {"id": ACCOUNT_ID, "name": "Fake", "subdomain": "fake", "country": "RU"}
        if (method, path) == ("POST", "/api/v4/calls"):
            return self._calls(data)
        if (method, path) == ("POST", "/api/v4/leads/unsorted/sip"):
            return self._sip(data)
        if (method, path) == ("GET", "/api/v4/leads/unsorted"):
            return self._unsorted_list(query)
        if (method, path) == ("GET", "/api/v4/contacts"):
            return self._search(query)
        if (method, path) == ("POST", "/api/v4/contacts"):
            return self._new_contacts(data)
        match = re.fullmatch(r"/api/v4/(leads|contacts|companies|customers)/notes", path)
        if match and method == "GET":
            return self._notes(match.group(1), query)
        if (method, path) == ("POST", "/api/v4/leads/notes"):
            return self._lead_notes(data)
        if (method, path) == ("POST", "/api/v2/events"):
            return self._event(data)
        if (method, path) == ("GET", "/api/v4/users"):
            return self._users(query)
        if path == "/api/v4/tasks" and method in ("GET", "POST"):
            return self._task_list(query) if method == "GET" else self._new_tasks(data)
        match = re.fullmatch(r"/api/v4/tasks/(\d+)", path)
        if match and method == "PATCH":
            return self._edit_task(int(match.group(1)), data)
        raise self._broken(f"{method} {path}: no such method")

    # -- calls -----------------------------------------------------------------------------------
    def _card(self, phone: str) -> tuple[str, int] | None:
        """Where amoCRM files a call of this number: the contact's only active lead, else the contact."""
        wanted = digits10(phone)
        for contact in self.contacts.values():
            if contact["visible"] and any(digits10(p) == wanted for p in self._phones(contact)):
                active = [lead for lead in contact["leads"] if self.leads[lead]["status"] == "active"]
                return ("leads", active[0]) if len(active) == 1 else ("contacts", contact["id"])
        return None

    @staticmethod
    def _phones(contact: dict[str, Any]) -> list[str]:
        return [str(v.get("value")) for f in contact.get("custom_fields_values") or [] if f.get("field_code") == "PHONE"
                for v in f.get("values") or []]  # fmt: skip

    def _user(self, value: Any, where: str) -> None:
        if not isinstance(value, int) or value not in self.users:
            raise self._broken(f"{where}: {value!r} is no user of the account")

    def _call_problem(self, call: Any) -> str | None:
        if not isinstance(call, dict):
            return "not an object"
        if set(call) - CALL_FIELDS:
            return f"unknown fields {sorted(set(call) - CALL_FIELDS)}"
        if CALL_REQUIRED - set(call):
            return f"missing {sorted(CALL_REQUIRED - set(call))}"
        if call["direction"] not in ("inbound", "outbound"):
            return f"direction {call['direction']!r}"
        for name in ("duration", "call_status", "created_at", "responsible_user_id", "created_by"):
            if name in call and (not isinstance(call[name], int) or isinstance(call[name], bool)):
                return f"{name} must be an integer"
        if "call_status" in call and call["call_status"] not in range(1, 8):
            return f"call_status {call['call_status']} (1-7)"
        if call["duration"] < 0:
            return "negative duration"
        for name in ("uniq", "source", "phone", "call_result", "request_id"):
            if name in call and not isinstance(call[name], str):
                return f"{name} must be a string"
        if "link" in call and not URL.match(str(call["link"])):
            return "link is not an http(s) URL"
        if not digits10(call["phone"]) or len(digits10(call["phone"])) < 10:
            return f"phone {call['phone']!r}"
        return None

    def _calls(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise self._broken("POST /api/v4/calls: the body must be a non-empty array")
        if len(data) > 250:
            raise self._broken(f"POST /api/v4/calls: {len(data)} calls (at most 250)")
        for index, call in enumerate(data):
            problem = self._call_problem(call)
            if problem:
                raise self._broken(f"calls[{index}]: {problem}")
            for name in ("responsible_user_id", "created_by"):
                if name in call:
                    self._user(call[name], f"calls[{index}].{name}")
        added: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, call in enumerate(data):
            request_id = str(call.get("request_id", index))
            card = self._card(call["phone"])
            if card is None:
                errors.append({"request_id": request_id, "status": 264, "title": "Entity not found",
                               "detail": "No contact or company with this phone number"})  # fmt: skip
                continue
            if digits10(call["phone"]) in self.refuse_phones:
                errors.append({"request_id": request_id, "status": 403, "title": "Forbidden",
                               "detail": "No rights on the card"})  # fmt: skip
                continue
            note = self._store_note(card, call)
            added.append({"id": note["id"], "entity_id": card[1], "entity_type": card[0], "account_id": ACCOUNT_ID,
                          "request_id": request_id})  # fmt: skip
        return {"_total_items": len(added), "_embedded": {"calls": added}, "errors": errors}

    def _store_note(self, card: tuple[str, int], call: dict[str, Any]) -> dict[str, Any]:
        note = {
            "id": self.next_id(), "entity_type": card[0], "entity_id": card[1],
            "note_type": "call_out" if call.get("direction") == "outbound" else "call_in",
            "params": {k: call[k] for k in NOTE_PARAMS if k in call},
            "responsible_user_id": call.get("responsible_user_id"), "created_by": call.get("created_by"),
            "created_at": call.get("created_at", int(self.now())), "updated_at": int(self.now()),
        }  # fmt: skip
        self.notes.append(note)
        return note

    def _notes(self, entity: str, query: dict[str, str]) -> dict[str, Any] | None:
        since = query.get("filter[updated_at][from]")
        if since is not None and not since.isdigit():
            raise self._broken("filter[updated_at][from] must be a timestamp")
        found = [
            n for n in self.notes if n["entity_type"] == entity and (since is None or n["updated_at"] >= int(since))
        ]
        return self._page(found, query, "notes")

    def _lead_notes(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise self._broken("POST /api/v4/leads/notes: the body must be a non-empty array")
        made: list[dict[str, Any]] = []
        for index, note in enumerate(data):
            known = {
                "entity_id",
                "note_type",
                "params",
                "created_by",
                "responsible_user_id",
                "created_at",
                "request_id",
            }
            if not isinstance(note, dict) or set(note) - known:
                raise self._broken(f"notes[{index}]: unknown fields")
            if note.get("entity_id") not in self.leads:
                raise Refused(400, "Bad Request", f"notes[{index}]: no such lead")
            if note.get("note_type") not in ("call_in", "call_out"):
                raise self._broken(f"notes[{index}]: note_type {note.get('note_type')!r}")
            params = note.get("params")
            if (
                not isinstance(params, dict)
                or set(params) - NOTE_PARAMS
                or not {"uniq", "duration", "source", "phone"} <= set(params)
            ):
                raise self._broken(
                    f"notes[{index}]: a call note's params are uniq, duration, source, phone (link, status)"
                )
            call = {**params, "direction": "outbound" if note["note_type"] == "call_out" else "inbound",
                    "responsible_user_id": note.get("responsible_user_id"), "created_by": note.get("created_by"),
                    "created_at": note.get("created_at")}  # fmt: skip
            problem = self._call_problem({k: v for k, v in call.items() if v is not None})
            if problem:
                raise self._broken(f"notes[{index}]: {problem}")
            stored = self._store_note(("leads", note["entity_id"]), call)
            made.append(
                {"id": stored["id"], "entity_id": note["entity_id"], "request_id": str(note.get("request_id", index))}
            )
        return {"_embedded": {"notes": made}}

    # -- unsorted --------------------------------------------------------------------------------
    def _sip(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise self._broken("POST /api/v4/leads/unsorted/sip: the body must be a non-empty array")
        made: list[dict[str, Any]] = []
        for index, entry in enumerate(data):
            if not isinstance(entry, dict) or set(entry) - SIP_FIELDS:
                raise self._broken(f"unsorted[{index}]: unknown fields")
            if not entry.get("source_uid") or not entry.get("source_name"):
                raise self._broken(f"unsorted[{index}]: source_uid and source_name are required")
            meta = entry.get("metadata")
            if not isinstance(meta, dict) or set(meta) - SIP_METADATA:
                raise self._broken(f"unsorted[{index}].metadata: unknown fields")
            if not isinstance(meta.get("called_at"), int) or not isinstance(meta.get("duration"), int):
                raise self._broken(f"unsorted[{index}].metadata: called_at and duration are integers")
            if not meta.get("phone") or not meta.get("uniq") or not meta.get("service_code"):
                raise self._broken(f"unsorted[{index}].metadata: uniq, phone and service_code are required")
            if "link" in meta and not URL.match(str(meta["link"])):
                raise self._broken(f"unsorted[{index}].metadata.link is not an http(s) URL")
            embedded = entry.get("_embedded") or {}
            leads, contacts = embedded.get("leads") or [], embedded.get("contacts") or []
            if len(leads) != 1 or len(contacts) > 1:
                raise self._broken(f"unsorted[{index}]: one lead and at most one contact")
            if "responsible_user_id" in leads[0]:
                self._user(leads[0]["responsible_user_id"], f"unsorted[{index}].lead.responsible_user_id")
            phones = [digits10(p) for c in contacts for p in self._phones(c)]
            pending = {digits10(p) for u in self.unsorted if u["status"] == "pending"
                       for p in self._phones(self.contacts[u["_embedded"]["contacts"][0]["id"]])}  # fmt: skip
            if set(phones) & pending:
                raise Refused(400, "Bad Request", "Duplicate", **{"validation-errors": [{"request_id": str(index),
                              "errors": [{"code": "Duplicate", "path": "_embedded.contacts", "detail": "already in unsorted"}]}]})  # fmt: skip
            lead_id, contact_id = self.next_id(), self.next_id()
            self.leads[lead_id] = {"id": lead_id, "name": leads[0].get("name", ""), "status": "unsorted",
                                   "responsible_user_id": leads[0].get("responsible_user_id")}  # fmt: skip
            contact = contacts[0] if contacts else {"name": meta["phone"]}
            self.contacts[contact_id] = {"id": contact_id, "name": contact.get("name"), "visible": False, "leads": [lead_id],
                                         "custom_fields_values": contact.get("custom_fields_values") or [],
                                         "responsible_user_id": leads[0].get("responsible_user_id")}  # fmt: skip
            uid = secrets.token_hex(16)
            stored = {"uid": uid, "source_uid": entry["source_uid"], "source_name": entry["source_name"], "category": "sip",
                      "pipeline_id": entry.get("pipeline_id", 1), "created_at": entry.get("created_at", int(self.now())),
                      "metadata": meta, "account_id": ACCOUNT_ID, "status": "pending",
                      "_embedded": {"leads": [{"id": lead_id}], "contacts": [{"id": contact_id}], "companies": []}}  # fmt: skip
            self.unsorted.append(stored)
            made.append({"uid": uid, "account_id": ACCOUNT_ID, "request_id": str(entry.get("request_id", index)),
                         "_embedded": stored["_embedded"]})  # fmt: skip
        return {"_total_items": len(made), "_embedded": {"unsorted": made}}

    def _unsorted_list(self, query: dict[str, str]) -> dict[str, Any] | None:
        category = query.get("filter[category][]")
        if category is not None and category not in ("sip", "mail", "forms", "chats"):
            raise self._broken(f"filter[category][] {category!r}")
        found = [u for u in self.unsorted if category in (None, u["category"])]
        if query.get("order[created_at]") == "desc":
            found = sorted(found, key=lambda u: -int(u["created_at"]))
        return self._page(found, query, "unsorted")

    # -- contacts, users, notifications ----------------------------------------------------------
    def _search(self, query: dict[str, str]) -> dict[str, Any] | None:
        wanted = query.get("query", "").strip()
        if not wanted:
            raise self._broken("GET /api/v4/contacts: this fake serves searches (query) only")
        digits = "".join(ch for ch in wanted if ch.isdigit())
        found = [
            {k: v for k, v in c.items() if k not in ("visible", "leads")}
            for c in self.contacts.values()
            if c["visible"] and ((digits and any(digits in "".join(ch for ch in p if ch.isdigit()) for p in self._phones(c)))
                                 or wanted.lower() in str(c.get("name") or "").lower())
        ]  # fmt: skip
        return self._page(found, query, "contacts")

    def _new_contacts(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise self._broken("POST /api/v4/contacts: the body must be a non-empty array")
        made = []
        for index, contact in enumerate(data):
            if not isinstance(contact, dict) or set(contact) - CONTACT_FIELDS:
                raise self._broken(f"contacts[{index}]: unknown fields")
            if "responsible_user_id" in contact:
                self._user(contact["responsible_user_id"], f"contacts[{index}].responsible_user_id")
            phones = self._phones(contact)
            if not phones:
                raise self._broken(f"contacts[{index}]: no PHONE value")
            contact_id = self.add_contact(
                phones[0], str(contact.get("name") or ""), contact.get("responsible_user_id", 7)
            )
            made.append({"id": contact_id, "request_id": str(contact.get("request_id", index))})
        return {"_embedded": {"contacts": made}}

    def _event(self, data: Any) -> dict[str, Any]:
        items = data.get("add") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise self._broken("POST /api/v2/events: {add: [...]} expected")
        made = []
        for item in items:
            if (
                not isinstance(item, dict)
                or set(item) - {"type", "phone_number", "users"}
                or item.get("type") != "phone_call"
            ):
                raise self._broken(f"events: {item!r} is not a phone_call notification")
            users = item.get("users")
            if not isinstance(users, list) or not users:
                raise self._broken("events: users must be a non-empty list")
            for user in users:
                self._user(user, "events.users")
            if not isinstance(item.get("phone_number"), str) or len(digits10(item["phone_number"])) < 10:
                raise self._broken("events: phone_number")
            self.events.append(item)
            card = self._card(item["phone_number"])
            made.append({"element_id": card[1] if card else 0, "element_type": {"contacts": 1, "leads": 2}.get(card[0], 0) if card else 0,
                         "phone_number": item["phone_number"], "uid": secrets.token_hex(8)})  # fmt: skip
        return {"_embedded": {"items": made}}

    def _users(self, query: dict[str, str]) -> dict[str, Any] | None:
        found = [{"id": i, "name": n, "email": f"{n.lower()}@example.com", "rights": {"is_active": True}}
                 for i, n in sorted(self.users.items())]  # fmt: skip
        return self._page(found, query, "users")

    def _page(self, found: list[dict[str, Any]], query: dict[str, str], key: str) -> dict[str, Any] | None:
        for name in ("page", "limit"):
            if name in query and not query[name].isdigit():
                raise self._broken(f"{name} must be a number")
        limit = int(query.get("limit", 50))
        if limit > 250:
            raise self._broken(f"limit {limit} (at most 250)")
        page = int(query.get("page", 1))
        chunk = found[(page - 1) * limit : page * limit]
        if not chunk:
            return None  # amoCRM answers an empty list with 204
        links: dict[str, Any] = {"self": {"href": "…"}}
        if page * limit < len(found):
            links["next"] = {"href": "…"}
        return {"_page": page, "_links": links, "_embedded": {key: chunk}}

    # -- tasks -----------------------------------------------------------------------------------
    def _new_tasks(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, list) or not data:
            raise self._broken("POST /api/v4/tasks: the body must be a non-empty array")
        made = []
        for index, task in enumerate(data):
            if not isinstance(task, dict) or set(task) - TASK_FIELDS:
                raise self._broken(f"tasks[{index}]: unknown fields")
            if (
                not isinstance(task.get("text"), str)
                or not task["text"]
                or not isinstance(task.get("complete_till"), int)
            ):
                raise self._broken(f"tasks[{index}]: text and complete_till are required")
            if task.get("task_type_id") not in (1, 2):
                raise self._broken(f"tasks[{index}]: task_type_id {task.get('task_type_id')!r}")
            self._user(task.get("responsible_user_id"), f"tasks[{index}].responsible_user_id")
            entity, entity_id = task.get("entity_type"), task.get("entity_id")
            table = {"contacts": self.contacts, "leads": self.leads}.get(str(entity))
            if table is None or entity_id not in table:
                raise Refused(400, "Bad Request", f"tasks[{index}]: no such {entity} {entity_id}")
            task_id = self.next_id()
            self.tasks[task_id] = {
                **{k: v for k, v in task.items() if k != "request_id"},
                "id": task_id,
                "is_completed": False,
            }
            made.append({"id": task_id, "request_id": str(task.get("request_id", index))})
        return {"_embedded": {"tasks": made}}

    def _task_list(self, query: dict[str, str]) -> dict[str, Any] | None:
        found = list(self.tasks.values())
        if "filter[entity_type]" in query:
            found = [t for t in found if t["entity_type"] == query["filter[entity_type]"]]
        if "filter[entity_id]" in query:
            found = [t for t in found if str(t["entity_id"]) == query["filter[entity_id]"]]
        if "filter[is_completed]" in query:
            found = [t for t in found if t["is_completed"] == (query["filter[is_completed]"] == "1")]
        return self._page(found, query, "tasks")

    def _edit_task(self, task_id: int, data: Any) -> dict[str, Any]:
        if task_id not in self.tasks:
            raise Refused(404, "Not Found", "no such task")
        if not isinstance(data, dict) or set(data) - {
            "is_completed",
            "result",
            "text",
            "complete_till",
            "responsible_user_id",
        }:
            raise self._broken("PATCH /api/v4/tasks/{id}: unknown fields")
        result = data.get("result")
        if result is not None and (not isinstance(result, dict) or not isinstance(result.get("text"), str)):
            raise self._broken("PATCH /api/v4/tasks/{id}: result must be {text}")
        self.tasks[task_id].update(data)
        return {"id": task_id, "updated_at": int(self.now())}

    # -- OAuth -----------------------------------------------------------------------------------
    def _oauth(self, data: Any) -> dict[str, Any]:
        if not self.client_secret:
            raise self._broken("POST /oauth2/access_token: this account has no integration")
        if not isinstance(data, dict):
            raise self._broken("POST /oauth2/access_token: a JSON object expected")
        if data.get("client_id") != CLIENT_ID or data.get("client_secret") != self.client_secret:
            raise Refused(401, "Unauthorized", "invalid client")
        if data.get("redirect_uri") != REDIRECT_URI:
            raise Refused(400, "Bad Request", "redirect_uri does not match the integration's")
        grant = data.get("grant_type")
        if grant == "authorization_code":
            if data.get("code") not in self.codes:
                raise Refused(400, "Bad Request", "Authorization code has expired")
            self.codes.discard(data["code"])
        elif grant == "refresh_token":
            if data.get("refresh_token") not in self.refresh_tokens:
                raise Refused(400, "Bad Request", "Token has been revoked")
            self.refresh_tokens.discard(data["refresh_token"])  # spent: each refresh rotates it
            self.refreshes += 1
        else:
            raise self._broken(f"grant_type {grant!r}")
        access, refresh = "acc-" + secrets.token_hex(24), "ref-" + secrets.token_hex(24)
        self.access_tokens[access] = self.now() + 86400
        self.refresh_tokens.add(refresh)
        return {"token_type": "Bearer", "expires_in": 86400, "access_token": access, "refresh_token": refresh,
                "server_time": int(self.now())}  # fmt: skip
