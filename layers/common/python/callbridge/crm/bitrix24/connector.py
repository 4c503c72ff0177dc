"""Bitrix24 call history connector (docs/bitrix24.md): a call is filed in two steps under the
CALL_ID Bitrix24 hands out - `telephony.externalcall.register`, then `telephony.externalcall.finish`
(duration, status code, the manager) - and its recording attached with
`telephony.externalCall.attachRecord` (the stored file's own URL, which Bitrix24 downloads).

Exactly once, although neither step is idempotent by an id of ours:
- the register parameters are written first (callbridge.store.crm_calls, `claim`): every attempt
  (a live card, a retry, another Lambda) registers with the same stored parameters, and Bitrix24
  answers a repeated register with the same parameters within 30 minutes with the same CALL_ID - so
  a register whose answer was lost costs nothing;
- the CALL_ID is stored before `finish` is asked; a stored `finished_at` means done;
- `finish_sent_at` is stored before a finish or a recording is sent, and never retried blindly in
  process: a later attempt first asks `voximplant.statistic.get` (filtered by the CALL_ID) whether
  the call is finished and has its recording, and sends only what is missing;
- a finish Bitrix24 refuses for a call its statistics show finished is a duplicate, not an error.
An outgoing call a manager clicked in Bitrix24 is finished under the CALL_ID of the click.
Each step for a whole batch of calls is one `batch` request (Bitrix24 allows ~2 requests a second).
"""

from __future__ import annotations

import time
from typing import Any

from callbridge.core.model import Call
from callbridge.core.phones import is_number
from callbridge.core.terms import Direction, Outcome
from callbridge.crm.base import (
    Callbacks,
    CallbackTasks,
    CallPlaced,
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
from callbridge.crm.bitrix24.api import Bitrix24Api, Bitrix24Error, MethodError, open_api
from callbridge.crm.bitrix24.calls import (
    CALL_ID,
    FINISHED,
    RECORDED,
    REGISTER,
    SENT,
    WITHHELD,
    bitrix_time,
    register_params,
)
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.crm.bitrix24.users import identity
from callbridge.infra import clock
from callbridge.infra.http import RetryPolicy
from callbridge.infra.observability import logger
from callbridge.store import crm_calls
from callbridge.store.updates import Update

DEFAULT_USER = "default_user"
NO_STATISTICS = "ERROR_METHOD_NOT_FOUND"  # voximplant.statistic.get on a portal without it
NO_USER = "no Bitrix24 user for this call: map its PBX user (bitrix24_user_id) or set default_user_id"
# Bitrix24's call status codes (SIP-like; docs/protocols/bitrix24.md).
STATUS_CODES = {
    Outcome.ANSWERED: "200",
    Outcome.MISSED: "304",
    Outcome.NO_ANSWER: "304",
    Outcome.BUSY: "486",
    Outcome.NOT_AVAILABLE: "480",
    Outcome.NOT_ALLOWED: "403",
    Outcome.NOT_FOUND: "404",
    Outcome.UNKNOWN: "OTHER",
}


class Bitrix24Connector:
    kind = "bitrix24"
    max_batch = 25  # two commands per call (finish + attachRecord) in one batch of at most 50
    takes_recording_link = False

    def __init__(
        self,
        settings: Bitrix24Settings,
        ctx: DeliveryContext,
        api_key: str = "",
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        api: Bitrix24Api | None = None,
    ):
        self.settings = settings
        self.ctx = ctx
        self.api = api or open_api(ctx.account, settings, timeout_s=timeout_s, retry=retry)

    def close(self) -> None:
        self.api.close()

    def manager(self, call: Call) -> tuple[dict[str, Any] | None, bool]:
        """How Bitrix24 names the call's manager, and whether it is the account's default. A missed
        call follows the one rule of every CRM (DeliveryContext.missed_call_owner)."""
        default = {"USER_ID": self.settings.default_user_id} if self.settings.default_user_id is not None else None
        if is_missed_incoming(call):
            return self.ctx.missed_call_owner(call, identity, default)
        mapping = self.ctx.user(call.user)
        who = identity(mapping) if mapping is not None else None
        if who:
            return who, False
        return default, True

    def records(self, call: Call, recording: bool) -> CallRecords:
        who, defaulted = self.manager(call)
        flags = frozenset({DEFAULT_USER}) if defaulted else frozenset()
        phone = call.phone or call.phone_raw or ""
        withheld = not is_number(phone)
        if withheld:
            # Bitrix24 files a call under any PHONE_NUMBER (register documents no format): a withheld
            # caller id is filed as "withheld", so that the portal's statistics count the call.
            phone = WITHHELD
        if call.started_at is None:
            return CallRecords([], rejected="the call has no start time", flags=flags)
        if who is None:
            return CallRecords([], rejected=NO_USER, flags=flags)
        direction = "out" if call.direction == Direction.OUT else "in"
        started = bitrix_time(call.started_at)
        payload: dict[str, Any] = {
            REGISTER: register_params(self.settings, who, phone, direction, started, call.our_number, call.call_id),
            "finish": {
                **who,
                "DURATION": int(call.duration),
                "STATUS_CODE": STATUS_CODES.get(call.outcome or Outcome.UNKNOWN, "OTHER"),
            },
        }
        if call.card_call_id:
            # The click-to-call's card was registered under our placeholder (core/clicks.py).
            payload["card"] = call.card_call_id
        if direction == "out" and call.user and not withheld:
            # Perhaps the call a click in Bitrix24 asked for (callbridge.crm.bitrix24.callbacks).
            payload["click"] = {"pbx_user": call.user, "phone": phone, "started": call.started_at.timestamp()}
        if recording:
            payload["record"] = self._record(call.call_id)
        return CallRecords([Record(call.call_id, "", payload)], flags=flags)

    def _record(self, call_id: str) -> dict[str, Any]:
        """attachRecord's file: Bitrix24 downloads RECORD_URL and its documentation promises no
        redirect, so it gets the stored object's own URL, which answers the bytes (any size;
        docs/bitrix24.md, "Recordings"). FILENAME must end in .mp3 or .wav."""
        if self.ctx.recording_file is None:  # a context without storage (tests of the mapping)
            return {"FILENAME": f"{call_id}.mp3", "RECORD_URL": self.ctx.recording_url(call_id)}
        url, extension = self.ctx.recording_file(call_id)
        return {"FILENAME": f"{call_id}.{extension}", "RECORD_URL": url}

    def send(self, batch: list[Record]) -> list[RecordResult]:
        return send_batch(batch, self._attempt)

    def _attempt(self, batch: list[Record]) -> list[RecordResult] | str:
        now = int(time.time())
        states = {r.delivery: self._state(r, now) for r in batch}
        results: dict[str, RecordResult] = {}
        try:
            self._register(batch, states, results)
            self._finish([r for r in batch if r.delivery not in results], states, results)
        except Bitrix24Error as exc:
            # The batch request itself was refused, naming no command: halved until the faulty call
            # stands alone (callbridge.crm.base.isolate). What went through is stored and not repeated.
            return f"Bitrix24 refused the request: {exc.reason}"
        return [results[r.delivery] for r in batch]

    def _state(self, record: Record, now: int) -> dict[str, Any]:
        """The stored item of the call, created with this record's register parameters unless a
        card or a click created it; an outgoing call a manager clicked in Bitrix24 gets the click's
        CALL_ID (Bitrix24 registered that call itself)."""
        crm, account = self.settings.name, self.ctx.account
        found = crm_calls.get(account, record.delivery, crm)
        if found is not None:
            return found
        attributes: dict[str, Any] = {REGISTER: record.payload[REGISTER], "via": "delivery"}
        card = crm_calls.get(account, record.payload["card"], crm) if record.payload.get("card") else None
        click = record.payload.get("click")
        if card and card.get(CALL_ID):
            # The card of the click (its placeholder) has the CALL_ID: the PBX's call finishes it.
            attributes.update({CALL_ID: card[CALL_ID], "via": "click"})
        elif click:
            from callbridge.crm.bitrix24.callbacks import take_click

            clicked = take_click(account, crm, record.delivery, click["pbx_user"], click["phone"], click["started"])
            placeholder = record.payload.get("card")
            if clicked and placeholder:
                # Cards and calls go separate ways: the click's card may come after its call. Its
                # placeholder is over now, so that a late card registers nothing of its own.
                now_iso = clock.iso(clock.now())
                crm_calls.claim(account, placeholder, crm, {CALL_ID: clicked, FINISHED: now_iso, "via": "click"}, now)
            elif placeholder and not clicked:
                # The click's card took the click a moment ago: its CALL_ID is on the placeholder.
                card = crm_calls.get(account, placeholder, crm)
                clicked = str(card[CALL_ID]) if card and card.get(CALL_ID) else None
            if clicked:
                attributes.update({CALL_ID: clicked, "via": "click"})
        return crm_calls.claim(account, record.delivery, crm, attributes, now)

    def _register(
        self, batch: list[Record], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]
    ) -> None:
        wanted = [r for r in batch if not states[r.delivery].get(CALL_ID)]
        if not wanted:
            return
        answers = self.api.batch(
            [(f"r{i}", "telephony.externalcall.register", states[r.delivery][REGISTER]) for i, r in enumerate(wanted)]
        )
        for i, record in enumerate(wanted):
            answer = answers[f"r{i}"]
            call_id = answer.get("CALL_ID") if isinstance(answer, dict) else None
            if isinstance(answer, MethodError) or not call_id:
                results[record.delivery] = RecordResult("rejected", f"Bitrix24 register: {answer}"[:500])
                continue
            crm_calls.update(self.ctx.account, record.delivery, self.settings.name,
                             Update().set_if_absent(**{CALL_ID: str(call_id)}))  # fmt: skip
            states[record.delivery][CALL_ID] = str(call_id)

    def _finish(self, batch: list[Record], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]) -> None:
        # A call an earlier attempt sent to finish (or its recording) without hearing the answer:
        # Bitrix24's statistics say whether that went through before anything is sent again.
        unsure = {i: states[r.delivery][CALL_ID] for i, r in enumerate(batch) if self._pending(r, states) and states[r.delivery].get(SENT)}  # fmt: skip
        checked = self._statistics(unsure)
        # Without the statistics (a portal without the telephony module's statistics method), the
        # documented fallback: send again - a repeated finish is refused for a finished call (taken
        # below as the unseen answer) and a repeated attachRecord replaces the file, never adds one.
        blind = set(unsure) if checked is None else set()
        for i, entry in (checked or {}).items():
            self._mark(batch[i], states, entry)
        commands: list[tuple[str, str, dict[str, Any]]] = []
        for i, record in enumerate(batch):
            state, call_id = states[record.delivery], states[record.delivery][CALL_ID]
            if not state.get(FINISHED):
                commands.append(
                    (f"f{i}", "telephony.externalcall.finish", {"CALL_ID": call_id, **record.payload["finish"]})
                )
            if record.payload.get("record") and not state.get(RECORDED):
                commands.append((f"a{i}", "telephony.externalCall.attachRecord", {"CALL_ID": call_id, **record.payload["record"]}))  # fmt: skip
            if self._pending(record, states):
                # Written before the request: if its answer is lost, the retry asks first (above).
                self._store(record, Update().set(**{SENT: clock.iso(clock.now())}))
        answers = self.api.batch(commands, repeatable=False) if commands else {}
        refused = {i: a for i in range(len(batch)) if isinstance(a := answers.get(f"f{i}"), MethodError)}
        statistics = self._statistics({i: states[batch[i].delivery][CALL_ID] for i in refused})
        finished_before = statistics or {}
        # A click's CALL_ID refused and not finished per the statistics is one Bitrix24 does not know.
        # Without statistics (a portal lacking the method) the two cannot be told apart, and the
        # documented fallback applies: the refusal is taken as the finish we never saw.
        unknown = [
            batch[i]
            for i in refused
            if statistics is not None and i not in finished_before and states[batch[i].delivery].get("via") == "click"
        ]
        if unknown:
            self._refile(unknown, states, results)
        for i, record in enumerate(batch):
            detail: dict[str, Any] = {}
            if record in unknown:
                continue
            if f"f{i}" not in answers:
                detail["duplicate"] = True  # finished by an earlier attempt
            elif i in refused:
                if i not in finished_before and i not in blind:
                    results[record.delivery] = RecordResult("rejected", f"Bitrix24 finish: {refused[i]}"[:500])
                    continue
                detail["duplicate"] = True  # finished already: an answer we never saw
                self._mark(record, states, finished_before.get(i, {}))
            self._mark(record, states, {})
            attached = answers.get(f"a{i}")
            if isinstance(attached, MethodError):
                # The call is filed; a recording Bitrix24 would not take is reported, not retried.
                logger().warning(
                    "Bitrix24 refused a recording", extra={"call_id": record.delivery, "error": str(attached)}
                )
                detail["recording"] = str(attached)
            elif attached is not None and not states[record.delivery].get(RECORDED):
                self._store(record, Update().set(**{RECORDED: True}))
            results[record.delivery] = RecordResult("ok", detail=detail)

    def _refile(self, batch: list[Record], states: dict[str, dict[str, Any]], results: dict[str, RecordResult]) -> None:
        """Calls filed under a click's CALL_ID that Bitrix24 does not know (a made-up one in an
        authentic click, a call deleted in the portal): registered and finished as calls of their
        own, so that no click can break a real call's delivery."""
        for record in batch:
            logger().warning("the CALL_ID of a click is unknown to Bitrix24: the call is registered anew",
                             extra={"call_id": record.delivery})  # fmt: skip
            state = {REGISTER: record.payload[REGISTER], "via": "click_unknown"}
            update = Update().set(**state).remove(CALL_ID, SENT)
            self._store(record, update)
            states[record.delivery] = state
        self._register(batch, states, results)
        self._finish([r for r in batch if r.delivery not in results], states, results)

    @staticmethod
    def _pending(record: Record, states: dict[str, dict[str, Any]]) -> bool:
        state = states[record.delivery]
        return not state.get(FINISHED) or bool(record.payload.get("record") and not state.get(RECORDED))

    def _store(self, record: Record, update: Update) -> None:
        crm_calls.update(self.ctx.account, record.delivery, self.settings.name, update)

    def _mark(self, record: Record, states: dict[str, dict[str, Any]], statistic: dict[str, Any]) -> None:
        """The call is finished (and, when its statistics entry names a file, its recording attached)."""
        state = states[record.delivery]
        recorded = bool(statistic.get("RECORD_FILE_ID") or statistic.get("CALL_RECORD_URL"))
        if not state.get(FINISHED):
            state[FINISHED] = clock.iso(clock.now())
            self._store(record, Update().set_if_absent(**{FINISHED: state[FINISHED]}))
            if record.payload.get("card"):  # the placeholder's card is over too: no hide after the finish
                crm_calls.update(self.ctx.account, record.payload["card"], self.settings.name,
                                 Update().set_if_absent(**{FINISHED: state[FINISHED]}))  # fmt: skip
        if recorded and not state.get(RECORDED):
            state[RECORDED] = True
            self._store(record, Update().set(**{RECORDED: True}))

    def _statistics(self, call_ids: dict[int, str]) -> dict[int, dict[str, Any]] | None:
        """The statistics entry (a finished call) of each of these calls Bitrix24 has one for; None
        when the portal has no `voximplant.statistic.get` (ERROR_METHOD_NOT_FOUND): a check that
        cannot run, not an access problem that should hold the delivery back."""
        if not call_ids:
            return {}
        answers = self.api.batch(
            [(f"s{i}", "voximplant.statistic.get", {"FILTER": {"CALL_ID": c}}) for i, c in call_ids.items()],
            tolerate=frozenset({NO_STATISTICS}),
        )
        if any(isinstance(a, MethodError) and a.code == NO_STATISTICS for a in answers.values()):
            logger().warning("Bitrix24 has no call statistics: finishes are sent again, refusals taken as done")
            return None
        found: dict[int, dict[str, Any]] = {}
        for i in call_ids:
            entries = answers.get(f"s{i}")
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                found[i] = entries[0]
        return found


PACKAGE = CrmPackage(
    connector=Bitrix24Connector,
    capabilities={
        LiveCards: "cards",
        ResponsibleLookup: "managers",
        Callbacks: "callbacks",
        CallPlaced: "callbacks",
        CallbackTasks: "todos",  # to-dos on the caller's contact or lead
        SetupLines: "setup",
    },
)
