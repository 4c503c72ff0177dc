"""What the operator console reads and does beyond the call history (docs/console.md): an account's
health, its users, its settings with every secret masked, and the redelivery of one call to one CRM.

Redelivery sends a call to a CRM again at most once per request, and never twice to a CRM that has
it (docs/delivery.md, "Exactly once" and "Calls corrected after delivery"):
- delivered or not applicable: nothing is sent; the answer says why;
- parked (rejected, failed): pending again, due now, attempts from zero, and a message on the
  delivery queue, so that the realtime worker sends it within seconds;
- pending: due now and a message on the queue, unless a worker holds it right now;
- a second request while the first waits for the worker (a double click) queues nothing more: both
  are conditional writes on the delivery item (store/deliveries.py), and the worker takes the
  delivery under its lease, so a CRM never gets it twice from us.
`plan` says beforehand what `redeliver` would do, in the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.handoff import send_messages
from callbridge.infra import aws, clock, secrets
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.store import call_pages, health, users
from callbridge.store import deliveries as store

# How many of the newest calls the health screen looks at for the last webhook: the last record a
# PBX sent is almost always of one of them, and reading them is one query.
RECENT_CALLS = 20
_ACTIVITY = ("last_event_at", "updated_at", "finalized_at", "created_at")
# A key whose value is a secret, whatever section it is in: masked even where the stored config
# kept a value (it keeps none: the secrets live in SSM; this is the second lock).
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_key|apikey|client_id|signing|credential)", re.I)
MASK = "**********"  # as pydantic shows a secret
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


class NotFound(LookupError):
    """No such call, CRM or delivery in this account; the message is safe to show."""


# -- health ----------------------------------------------------------------------------------------
def _every(expression: str) -> timedelta | None:
    """The period of an EventBridge `rate(...)` expression; None for a cron one."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    unit = match.group(2).rstrip("s")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[unit])


def _last_webhook(account_id: str) -> str | None:
    recent = call_pages.page(account_id, call_pages.Query(), RECENT_CALLS).items
    times = [str(c[k]) for c in recent for k in _ACTIVITY if c.get(k)]
    return max(times) if times else None


def _dead_lettered() -> int | None:
    """Messages in the deliveries' dead-letter queue (every account's: SQS counts no more finely);
    None when it cannot be read, which the screen shows as unknown rather than failing."""
    url = get_settings().delivery_dlq_url
    if not url:
        return None
    try:
        attributes = aws.sqs().get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
    except Exception:
        logger().exception("could not read the delivery dead-letter queue")
        return None
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def account_health(account: Account) -> dict[str, Any]:
    """The health screen: the PBX's last webhook, each CRM's last success and error with its parked
    deliveries, the dead-lettered deliveries, and the PBX's scheduled job (reconciliation or poll)."""
    crm_stamps, runs = health.stamps(account.id)
    crms = []
    for crm in account.settings.crms:
        stamp = crm_stamps.get(crm.name, {})
        crms.append(
            {
                "name": crm.name,
                "kind": crm.kind,
                "mode": crm.mode,
                "last_success_at": stamp.get("last_success_at"),
                "last_error_at": stamp.get("last_error_at"),
                "last_error": stamp.get("last_error"),
                "parked": {state: store.count_parked(account.id, crm.name, state) for state in store.PARKED},
            }
        )
    schedules = dict(get_settings().job_schedules)
    reconciliation = None
    expression = schedules.get(account.pbx_kind)
    if expression:
        run = runs.get(account.pbx_kind, {})
        period = _every(expression)
        ran_at = run.get("ran_at")
        reconciliation = {
            "job": account.pbx_kind,
            "schedule": expression,
            "last_run_at": ran_at,
            "last_status": run.get("status"),
            "next_at": clock.iso(clock.parse_iso(str(ran_at)) + period) if ran_at and period else None,
        }
    return {
        "account": account.id,
        "checked_at": clock.iso(clock.now()),
        "pbx": {"kind": account.pbx_kind, "last_webhook_at": _last_webhook(account.id)},
        "crms": crms,
        "dead_lettered": {"deliveries": _dead_lettered(), "scope": "stack"},
        "reconciliation": reconciliation,
    }


# -- users ------------------------------------------------------------------------------------------
def account_users(account: Account) -> dict[str, Any]:
    """PBX user ↔ CRM users: the PBX's users no mapping names first (from the last sync), then the
    mapped ones with what the account file says of them in each CRM and what the last sync saw."""
    stored = {str(u.get("pbx_user")): u for u in users.mapped(account.id)}
    mapped = []
    for user in sorted(account.settings.users, key=lambda u: u.pbx_user):
        fields = user.model_dump(mode="json", exclude_none=True)
        sync = stored.get(user.pbx_user, {})
        mapped.append(
            {
                "pbx_user": user.pbx_user,
                "name": user.name,
                "extension": user.extension,
                "mapped": True,
                "crm_fields": {k: v for k, v in fields.items() if k not in ("pbx_user", "name", "extension")},
                "seen_in_pbx": sync.get("seen_in_pbx"),
                "synced_at": sync.get("synced_at"),
            }
        )
    unmapped: list[dict[str, Any]] = [
        {
            "pbx_user": str(u.get("name")),
            "name": u.get("real_name"),
            "extension": u.get("pbx_ext"),
            "mapped": False,
            "crm_fields": {},
            "seen_in_pbx": True,
            "synced_at": u.get("synced_at"),
        }
        for u in sorted(users.unmapped(account.id), key=lambda u: str(u.get("name")))
    ]
    return {"account": account.id, "users": unmapped + mapped, "unmapped": len(unmapped)}


# -- settings ---------------------------------------------------------------------------------------
def masked(value: Any, key: str = "") -> Any:
    """`value` with every value under a secret-looking key replaced by MASK (lists and dicts within)."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return MASK
    return value


def account_settings(account: Account) -> dict[str, Any]:
    """The account's settings as applied, every secret masked. The stored config holds no secret
    (they live in SSM: infra/secrets.py): the typed view of it has a placeholder for each, shown as
    MASK, so the operator sees which are set without seeing one; so is any value under a
    secret-looking key. The API keys are not stored at all; one is set, since it signed this request.
    The contacts directory is left out: it is data, not a setting, and can be long."""
    # Here, not at the top: the console API's other answers (and its refusals) need no account
    # config model, whose import is a large part of their cold start.
    from callbridge.core.config import STORED_SECRET

    typed = account.settings.model_dump(mode="json", exclude={"contacts"})
    typed["api_keys"] = MASK
    # Which secrets the account has in SSM, by name: the values are read with them (one request,
    # cached as for every credential check) and dropped here.
    names = sorted(secrets.account_secrets(account.id, version=account.version))
    return {
        "account": account.id,
        "settings": masked(_placeholders_masked(typed, STORED_SECRET)),
        "secrets": dict.fromkeys(names, MASK),
    }


def _placeholders_masked(value: Any, placeholder: str) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders_masked(v, placeholder) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders_masked(v, placeholder) for v in value]
    return MASK if value in (placeholder, MASK) else value


# -- redelivery -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Redelivery:
    crm: str
    state: str  # the delivery's state when asked
    action: str  # "send": it will be (or was) queued; "none": nothing is sent
    result: str  # what was done: queued | delivered | not_applicable | in_progress | requested | (plan: would_send)
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "state": self.state,
            "action": self.action,
            "result": self.result,
            "message": self.message,
        }


def _delivery(account: Account, call_id: str, crm_name: str) -> dict[str, Any]:
    if account.settings.crm(crm_name) is None:
        raise NotFound(f"No CRM named {crm_name!r} in this account")
    if not call_id or len(call_id) > 512:
        raise NotFound("Call not found")
    item = store.get_one(account.id, call_id, crm_name)
    if item is None:
        raise NotFound(f"This call has no delivery to {crm_name}")
    return item


def _live(until: Any, now: datetime) -> bool:
    return bool(until) and clock.parse_iso(str(until)) > now


def _waited(now: datetime) -> datetime:
    """A redelivery asked for before this and still not taken by a worker is taken for lost (its
    message never came through): a worker's lease is the longest a taken one waits."""
    return now - timedelta(seconds=get_settings().delivery_lease_s)


def _decide(item: dict[str, Any], crm: str, now: datetime, lost_before: datetime) -> Redelivery:
    """What a redelivery of `item` does now, in words the page shows before the click."""
    state = str(item.get("state") or "")
    if state == store.DELIVERED:
        return Redelivery(
            crm,
            state,
            "none",
            "delivered",
            f"{crm} has this call since {item.get('delivered_at')}: nothing is sent again. A CRM keeps "
            "the call it got and does not update it from a second send (docs/delivery.md).",
        )
    if state == store.NOT_APPLICABLE:
        return Redelivery(
            crm,
            state,
            "none",
            "not_applicable",
            f"{crm} has no place for this call ({item.get('reason') or 'not applicable'}): nothing is sent.",
        )
    if state == store.PENDING:
        if _live(item.get("lease_until"), now):
            return Redelivery(
                crm, state, "none", "in_progress", f"A worker is sending this call to {crm} right now: wait for it."
            )
        asked = item.get("redelivery_at")
        if asked and clock.parse_iso(str(asked)) >= lost_before:
            return Redelivery(
                crm,
                state,
                "none",
                "requested",
                f"A redelivery to {crm} was asked for at {asked} and waits for the worker: nothing more is queued.",
            )
        return Redelivery(
            crm,
            state,
            "send",
            "would_send",
            f"Pending (attempt {int(item.get('attempts') or 0)}, due {str(item.get('dlv_due', '')).split('#')[0]}): "
            f"it is sent to {crm} now instead, once.",
        )
    if state in store.PARKED:
        return Redelivery(
            crm,
            state,
            "send",
            "would_send",
            f"Parked {state}: {item.get('reason') or state}. It is sent to {crm} again now, once; if {crm} "
            "refuses it again it is parked again with the new reason.",
        )
    return Redelivery(crm, state, "none", "unknown", f"The delivery to {crm} is in no state a redelivery can change.")


def plan(account: Account, call_id: str, crm: str) -> Redelivery:
    """What `redeliver` would do now; NotFound for an unknown call, CRM or delivery."""
    now = clock.now()
    return _decide(_delivery(account, call_id, crm), crm, now, _waited(now))


def redeliver(account: Account, call_id: str, crm: str) -> Redelivery:
    """Send the call to the CRM again, once (see the module's docstring)."""
    now = clock.now()
    item = _delivery(account, call_id, crm)
    decided = _decide(item, crm, now, _waited(now))
    if decided.action != "send":
        return decided
    if decided.state == store.PENDING:
        taken = store.redeliver_pending(account.id, call_id, crm, now, _waited(now))
    else:
        taken = store.redeliver_parked(account.id, call_id, crm, now)
    if not taken:
        # Another request (the second click) or a worker changed it between our read and our write:
        # say what it is now, and queue nothing.
        later = clock.now()
        return _decide(_delivery(account, call_id, crm), crm, later, _waited(later))
    send_messages(account.id, call_id, [crm])
    logger().info("redelivery queued", extra={"crm": crm, "was": decided.state})
    return Redelivery(crm, decided.state, "send", "queued", f"Queued: the worker sends this call to {crm} now, once.")
