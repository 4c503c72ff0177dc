"""amoCRM / Kommo call delivery (docs/kommo.md, docs/protocols/kommo.md): calls added with
`POST /api/v4/calls`, 50 to a request, filed by amoCRM on the card its number matches; a number
nobody has is refused, and then (`unknown_numbers: lead`) an incoming caller becomes an incoming
lead in unsorted (`POST /api/v4/leads/unsorted/sip`, the call in its metadata; his later calls go
onto that lead as call notes), and an outgoing call's number a contact, the call then added again.

Exactly once, although amoCRM's `uniq` de-duplicates nothing (a resent call is a second note):
- our progress per call is kept beside it (callbridge.store.crm_calls): `sent_at` (and what was
  sent) is written before an add, amoCRM's id after it; a stored id means done;
- an add is sent once per try (callbridge.crm.kommo.api, `once`): a timeout or a 5xx may come after
  amoCRM saved it. The next try finds `sent_at` without an id and looks first - the recent call
  notes of leads, contacts and companies for our call id in `params.uniq`, or the recent unsorted
  entries for it in `metadata.uniq` - and sends again only what it does not find;
- each try starts with `GET /api/v4/account`, which may be retried: an outage or a wrong address
  shows there, before anything that must not be sent twice is sent.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from callbridge.core.model import Call
from callbridge.core.phones import is_number
from callbridge.core.terms import Direction, Outcome, missed_reason_text
from callbridge.crm.base import (
    CallbackTasks,
    CallRecords,
    CrmPackage,
    DeliveryContext,
    LiveCards,
    Record,
    RecordResult,
    ResponsibleLookup,
    SetupLines,
    is_missed_incoming,
    send_batch,
)
from callbridge.crm.kommo.api import KommoApi, KommoError, obj, open_api
from callbridge.crm.kommo.calls import LEAD, NOTE, OWNER, SENT, SKIPPED, STATUS, caller_key
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import user_id
from callbridge.infra import clock
from callbridge.infra.http import RetryPolicy, UnexpectedAnswer
from callbridge.infra.observability import logger
from callbridge.store import crm_calls
from callbridge.store.updates import Update

DEFAULT_USER = "default_user"
NO_NUMBER = "the call has no client number (withheld caller id); amoCRM files calls by phone"
NO_USER = "no amoCRM user for this call: map its PBX user (kommo_user_id) or set default_user_id"
SENT_AS = "sent_as"  # what the unanswered add was: "call", "unsorted" or "note"
NOTE_TYPES = frozenset({"call_in", "call_out"})
NOTE_ENTITIES = ("leads", "contacts", "companies")  # where amoCRM files a call (customers: not used)
LOOKBACK = timedelta(seconds=60)  # our clock and amoCRM's: a note saved "before" we wrote sent_at
RESULTS = {
    Outcome.ANSWERED: "Conversation",
    Outcome.NO_ANSWER: "No answer",
    Outcome.BUSY: "Busy",
    Outcome.NOT_AVAILABLE: "Not available",
    Outcome.NOT_ALLOWED: "Not allowed",
    Outcome.NOT_FOUND: "Number not found",
}


class KommoConnector:
    kind = "kommo"
    max_batch = 50
    takes_recording_link = True

    def __init__(
        self,
        settings: KommoSettings,
        ctx: DeliveryContext,
        api_key: str = "",
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        api: KommoApi | None = None,
    ):
        self.settings = settings
        self.ctx = ctx
        self.api = api or open_api(ctx.account, settings, timeout_s=timeout_s, retry=retry)

    def close(self) -> None:
        self.api.close()

    # -- records ---------------------------------------------------------------------------------
    def manager(self, call: Call) -> tuple[int | None, bool]:
        """The call's amoCRM user, and whether it is the account's default. A missed call follows
        the one rule of every CRM (DeliveryContext.missed_call_owner)."""
        default = self.settings.default_user_id
        if is_missed_incoming(call):
            return self.ctx.missed_call_owner(call, user_id, default)
        mapping = self.ctx.user(call.user)
        found = user_id(mapping) if mapping is not None else None
        if found is not None:
            return found, False
        return default, True

    def records(self, call: Call, recording: bool) -> CallRecords:
        who, defaulted = self.manager(call)
        flags = frozenset({DEFAULT_USER}) if defaulted else frozenset()
        if not is_number(call.phone or ""):
            # `phone` is mandatory and the call's only link to a card: nothing to file it under.
            return CallRecords([], not_applicable=NO_NUMBER, flags=flags)
        if call.started_at is None:
            return CallRecords([], rejected="the call has no start time", flags=flags)
        if who is None:
            return CallRecords([], rejected=NO_USER, flags=flags)
        outcome = call.outcome or Outcome.UNKNOWN
        result = RESULTS.get(outcome, "")
        if outcome in (Outcome.MISSED, Outcome.UNKNOWN) or not result:
            result = f"Missed: {missed_reason_text(call.missed_reason)}" if call.missed_reason else "Missed"
        item: dict[str, Any] = {
            "direction": "outbound" if call.direction == Direction.OUT else "inbound",
            "uniq": call.call_id,
            "duration": int(call.duration or 0),
            "source": self.settings.source,
            "phone": call.phone,
            "call_status": STATUS.get(outcome, 6),
            "call_result": result,
            "responsible_user_id": who,
            "created_by": who,
            "created_at": int(call.started_at.timestamp()),  # epoch seconds: UTC whatever the zone
        }
        if recording:
            # Our signed playback link: amoCRM's player fetches it whenever a manager presses play.
            item["link"] = self.ctx.recording_url(call.call_id)
        return CallRecords([Record(call.call_id, "", {"call": item})], flags=flags)

    # -- sending ---------------------------------------------------------------------------------
    def send(self, batch: list[Record]) -> list[RecordResult]:
        return send_batch(batch, self._attempt)

    def _attempt(self, batch: list[Record]) -> list[RecordResult] | str:
        now = int(time.time())
        states = {r.delivery: crm_calls.claim(self.ctx.account, r.delivery, self.settings.name, {"via": "delivery"}, now)
                  for r in batch}  # fmt: skip
        results: dict[str, RecordResult] = {}
        for record in batch:
            state = states[record.delivery]
            if state.get(NOTE) or state.get(LEAD) or state.get(SKIPPED):
                results[record.delivery] = RecordResult("ok", detail={"duplicate": True})
        pending = [r for r in batch if r.delivery not in results]
        if not pending:
            return [results[r.delivery] for r in batch]
        try:
            self._account()
            unsure = [r for r in pending if states[r.delivery].get(SENT)]
            if unsure:
                self._recover(unsure, states, results)
            todo = [r for r in pending if r.delivery not in results]
            refused = self._add_calls(todo, states, results) if todo else []
            if refused:
                self._unknown(refused, states, results)
        except KommoError as exc:
            # The request as a whole was refused (a 400 names no item we could keep): nothing was
            # stored, so the records are halved until the faulty one stands alone (crm/base.isolate).
            return f"amoCRM refused the request: {exc.reason}"
        return [results[r.delivery] for r in batch]

    def _account(self) -> None:
        """`GET /api/v4/account`: amoCRM answers, as itself (module docstring)."""
        answer = self.api.request("GET", "/api/v4/account")
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), int) or not answer.get("subdomain"):
            raise UnexpectedAnswer("kommo", "GET", "/api/v4/account", "not amoCRM's answer (no account id)")

    def _store(self, call_id: str, update: Update) -> None:
        crm_calls.update(self.ctx.account, call_id, self.settings.name, update)

    def _sending(self, records: list[Record], states: dict[str, dict[str, Any]], kind: str) -> None:
        """Written before an add: if its answer is lost, the next try looks before resending."""
        sent = clock.iso(clock.now())
        for record in records:
            self._store(record.delivery, Update().set(**{SENT: sent, SENT_AS: kind}))
            states[record.delivery].update({SENT: sent, SENT_AS: kind})

    def _not_sent(self, records: list[Record], states: dict[str, dict[str, Any]]) -> None:
        """amoCRM said it stored nothing of these: a next try sends them without looking first."""
        for record in records:
            self._store(record.delivery, Update().remove(SENT, SENT_AS))
            states[record.delivery].pop(SENT, None)
            states[record.delivery].pop(SENT_AS, None)

    def _done(self, record: Record, states: dict[str, dict[str, Any]], **fields: Any) -> None:
        self._store(record.delivery, Update().set(**fields))
        states[record.delivery].update(fields)

    # -- calls on known numbers ------------------------------------------------------------------
    def _add_calls(
        self, records: list[Record], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]
    ) -> list[tuple[Record, str]]:
        """Add the calls; the ones amoCRM refused (with its reason) are returned, the rest settled."""
        path = "/api/v4/calls"
        body = [{**r.payload["call"], "request_id": str(i)} for i, r in enumerate(records)]
        self._sending(records, states, "call")
        try:
            answer = self.api.request("POST", path, body=body, once=True)
        except KommoError:
            self._not_sent(records, states)
            raise
        added = {str(c.get("request_id")): c for c in self.api.embedded(answer, "calls", "POST", path)}
        errors = _item_errors(answer)
        refused: list[tuple[Record, str]] = []
        for i, record in enumerate(records):
            call = added.get(str(i))
            if call is not None and call.get("id") not in (None, ""):
                self._done(record, states, **{NOTE: str(call["id"])})
                results[record.delivery] = RecordResult(
                    "ok", detail={"entity": f"{call.get('entity_type')}:{call.get('entity_id')}"}
                )
            elif str(i) in errors:
                self._not_sent([record], states)
                refused.append((record, errors[str(i)]))
            else:
                # Neither added nor refused: amoCRM may have stored it; the next try looks first.
                results[record.delivery] = RecordResult("transient", "amoCRM answered nothing for this call")
        return refused

    # -- unknown numbers -------------------------------------------------------------------------
    def _unknown(
        self, refused: list[tuple[Record, str]], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]
    ) -> None:
        """Calls amoCRM refused. A number a contact has is refused for another reason: rejected.
        Otherwise the number is unknown: an incoming lead (incoming) or a contact (outgoing), or
        nothing (`unknown_numbers: skip`)."""
        again: list[Record] = []
        created: set[str] = set()
        for record, reason in refused:
            call = record.payload["call"]
            if self._known(call["phone"]):
                results[record.delivery] = RecordResult("rejected", f"amoCRM refused the call: {reason}"[:500])
            elif self.settings.unknown_numbers == "skip":
                self._done(record, states, **{SKIPPED: True})
                results[record.delivery] = RecordResult(
                    "ok", detail={"skipped": "unknown number (unknown_numbers: skip)"}
                )
            elif call["direction"] == "inbound":
                self._incoming_lead(record, states, results)
            else:
                if call["phone"] not in created:
                    self._new_contact(call)
                    created.add(call["phone"])
                again.append(record)
        if again:
            for record, reason in self._add_calls(again, states, results):
                results[record.delivery] = RecordResult("rejected", f"amoCRM refused the call: {reason}"[:500])

    def _known(self, phone: str) -> bool:
        from callbridge.crm.kommo.managers import find_contact

        return find_contact(self.api, phone) is not None

    def _new_contact(self, call: dict[str, Any]) -> None:
        """The number of an outgoing call nobody has, as a contact of the manager: amoCRM then
        files the call (and the next ones) on it. Looked up first by `_known`, so a contact made by
        a try whose answer was lost is found, not made twice."""
        contact = {
            "name": call["phone"],
            "responsible_user_id": call["responsible_user_id"],
            "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": call["phone"], "enum_code": "WORK"}]}
            ],
            "request_id": "0",
        }
        answer = self.api.request("POST", "/api/v4/contacts", body=[contact], once=True)
        self.api.embedded(answer, "contacts", "POST", "/api/v4/contacts")

    def _incoming_lead(
        self, record: Record, states: dict[str, dict[str, Any]], results: dict[str, RecordResult]
    ) -> None:
        """The caller's incoming lead: made with this call (once per caller), or, when an earlier
        call made it, this call added onto it as a call note."""
        call = record.payload["call"]
        account, crm = self.ctx.account, self.settings.name
        key = caller_key(call["phone"])
        caller = crm_calls.claim(account, key, crm, {OWNER: record.delivery}, int(time.time()))
        if not caller.get(LEAD) and caller.get(OWNER) != record.delivery:
            owner = crm_calls.get(account, str(caller.get(OWNER)), crm) or {}
            if owner.get(SENT) and owner.get(SENT_AS) == "unsorted":
                results[record.delivery] = RecordResult(
                    "transient", "the caller's incoming lead is being made by another call"
                )
                return
            # The owner never sent its lead (rejected, settled otherwise): this call makes it.
            taken = Update().set(**{OWNER: record.delivery}).bind({"#o": OWNER}, old=str(caller.get(OWNER)))
            if not crm_calls.update(account, key, crm, taken, "#o = :old"):
                results[record.delivery] = RecordResult(
                    "transient", "the caller's incoming lead is being made by another call"
                )
                return
        if caller.get(LEAD):
            lead = str(caller[LEAD])
            try:
                self._onto_lead(record, states, results, lead)
                return
            except KommoError as exc:
                # A lead amoCRM no longer takes calls on (a manager rejected the incoming lead):
                # forgotten, and this call makes the caller's new incoming lead.
                self._not_sent([record], states)
                logger().info("the caller's incoming lead takes no more calls: a new one is made",
                              extra={"call_id": record.delivery, "error": exc.reason})  # fmt: skip
                forget = Update().set(**{OWNER: record.delivery}).remove(LEAD).bind({"#l": LEAD}, lead=lead)
                if not crm_calls.update(account, key, crm, forget, "#l = :lead"):
                    results[record.delivery] = RecordResult("transient", "the caller's incoming lead changed meanwhile")
                    return
        self._sending([record], states, "unsorted")
        lead = self._unsorted(call)
        crm_calls.update(account, key, crm, Update().set_if_absent(**{LEAD: lead}))
        self._done(record, states, **{LEAD: lead})
        results[record.delivery] = RecordResult("ok", detail={"incoming_lead": lead})

    def _unsorted(self, call: dict[str, Any]) -> str:
        path = "/api/v4/leads/unsorted/sip"
        metadata: dict[str, Any] = {
            "uniq": call["uniq"],
            "duration": call["duration"],
            "service_code": self.settings.source,
            "phone": call["phone"],
            "from": call["phone"],
            "called_at": call["created_at"],
            "is_call_event_needed": True,  # the call shows in the lead's feed
        }
        if call.get("link"):
            metadata["link"] = call["link"]
        entry: dict[str, Any] = {
            "source_uid": call["uniq"],
            "source_name": self.settings.source,
            "created_at": call["created_at"],
            "request_id": "0",
            "metadata": metadata,
            "_embedded": {
                "leads": [{"name": f"Call from {call['phone']}", "responsible_user_id": call["responsible_user_id"]}],
                "contacts": [{
                    "name": call["phone"],
                    "custom_fields_values": [
                        {"field_code": "PHONE", "values": [{"value": call["phone"], "enum_code": "WORK"}]}
                    ],
                }],
            },
        }  # fmt: skip
        if self.settings.pipeline_id is not None:
            entry["pipeline_id"] = self.settings.pipeline_id
        answer = self.api.request("POST", path, body=[entry], once=True)
        made = self.api.embedded(answer, "unsorted", "POST", path)
        lead = _lead_of(made[0]) if made else None
        if lead is None:
            raise UnexpectedAnswer("kommo", "POST", path, "the answer names no incoming lead")
        return lead

    def _onto_lead(self, record: Record, states: dict[str, dict[str, Any]], results: dict[str, RecordResult],
                   lead: str) -> None:  # fmt: skip
        call = record.payload["call"]
        note = {
            "entity_id": int(lead),
            "note_type": "call_out" if call["direction"] == "outbound" else "call_in",
            "created_by": call["created_by"],
            "responsible_user_id": call["responsible_user_id"],
            "created_at": call["created_at"],
            "request_id": "0",
            "params": {k: call[k] for k in ("uniq", "duration", "source", "link", "phone", "call_status", "call_result")
                       if k in call},
        }  # fmt: skip
        self._sending([record], states, "note")
        answer = self.api.request("POST", "/api/v4/leads/notes", body=[note], once=True)
        notes = self.api.embedded(answer, "notes", "POST", "/api/v4/leads/notes")
        if not notes or notes[0].get("id") in (None, ""):
            raise UnexpectedAnswer("kommo", "POST", "/api/v4/leads/notes", "the answer names no note")
        self._done(record, states, **{NOTE: str(notes[0]["id"]), LEAD: lead})
        results[record.delivery] = RecordResult("ok", detail={"incoming_lead": lead})

    # -- after a lost answer -------------------------------------------------------------------
    def _recover(
        self, unsure: list[Record], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]
    ) -> None:
        """What the unanswered adds of an earlier try stored: found ones are done (a duplicate),
        the others are sent again."""
        since = min(clock.parse_iso(str(states[r.delivery][SENT])) for r in unsure) - LOOKBACK
        wanted = {r.delivery for r in unsure}
        notes: dict[str, dict[str, Any]] = {}
        if any(states[r.delivery].get(SENT_AS) in ("call", "note") for r in unsure):
            for entity in NOTE_ENTITIES:
                found = self.api.pages(
                    f"/api/v4/{entity}/notes", "notes", {"filter[updated_at][from]": int(since.timestamp())}
                )
                for note in found:
                    params = obj(note.get("params"))
                    uniq = str(params.get("uniq") or "")
                    if note.get("note_type") in NOTE_TYPES and uniq in wanted:
                        notes.setdefault(uniq, {**note, "entity_type": entity})
        leads: dict[str, str] = {}
        if any(states[r.delivery].get(SENT_AS) == "unsorted" for r in unsure):
            answer = self.api.request("GET", "/api/v4/leads/unsorted", params={
                "filter[category][]": "sip", "order[created_at]": "desc", "limit": 250})  # fmt: skip
            for entry in self.api.embedded(answer, "unsorted", "GET", "/api/v4/leads/unsorted"):
                metadata = obj(entry.get("metadata"))
                uniq, lead = str(metadata.get("uniq") or ""), _lead_of(entry)
                if uniq in wanted and lead:
                    leads[uniq] = lead
        for record in unsure:
            call_id = record.delivery
            if call_id in notes:
                self._done(record, states, **{NOTE: str(notes[call_id].get("id"))})
            elif call_id in leads:
                key = caller_key(record.payload["call"]["phone"])
                crm_calls.update(
                    self.ctx.account, key, self.settings.name, Update().set_if_absent(**{LEAD: leads[call_id]})
                )
                self._done(record, states, **{LEAD: leads[call_id]})
            else:
                self._not_sent([record], states)  # not stored: sent again below
                continue
            results[call_id] = RecordResult("ok", detail={"duplicate": True})


def _item_errors(answer: Any) -> dict[str, str]:
    """The refused items of an add, by request_id: `errors` beside `_embedded` (the v4 pages) or
    inside it (older clients read it there; docs/protocols/kommo.md, "Where sources disagree")."""
    found: list[Any] = []
    if isinstance(answer, dict):
        embedded = answer.get("_embedded")
        for place in (answer.get("errors"), embedded.get("errors") if isinstance(embedded, dict) else None):
            if isinstance(place, list):
                found.extend(place)
    errors: dict[str, str] = {}
    for error in found:
        if isinstance(error, dict) and error.get("request_id") is not None:
            words = [str(error.get(k)) for k in ("status", "title", "detail", "msg") if error.get(k) not in (None, "")]
            errors[str(error["request_id"])] = ": ".join(words) or "refused"
    return errors


def _lead_of(entry: dict[str, Any]) -> str | None:
    leads = obj(entry.get("_embedded")).get("leads")
    leads = leads if isinstance(leads, list) else []
    lead = leads[0].get("id") if leads and isinstance(leads[0], dict) else None
    return str(lead) if lead not in (None, "") else None


PACKAGE = CrmPackage(
    connector=KommoConnector,
    capabilities={
        LiveCards: "cards",  # amoCRM's ringing notification
        ResponsibleLookup: "managers",
        CallbackTasks: "tasks",
        SetupLines: "setup",
    },
)
