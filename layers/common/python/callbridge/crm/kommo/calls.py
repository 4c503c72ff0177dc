"""What we keep of a call filed in amoCRM (callbridge.store.crm_calls) and how a canonical call
becomes an item of `POST /api/v4/calls` (docs/protocols/kommo.md, "Calls on known numbers")."""

from __future__ import annotations

from callbridge.core.terms import Outcome

# The stored item's fields, per call (callbridge.store.crm_calls).
SENT = "sent_at"  # an add (call, lead, note) was sent; its answer may have been lost (UTC ISO)
NOTE = "note_id"  # amoCRM's id of the call's note: done
LEAD = "lead_id"  # the incoming lead the call went into (unsorted), or onto as a note
SKIPPED = "skipped"  # an unknown number with `unknown_numbers: skip`: settled, not stored
# Per unknown caller (the item's call id is `unsorted#{e164}`): his incoming lead, made once.
CALLER = "unsorted#{phone}"
OWNER = "owner"  # the call whose delivery creates the lead

# amoCRM's call_status (docs/protocols/kommo.md).
STATUS = {
    Outcome.ANSWERED: 4,  # conversation held
    Outcome.MISSED: 6,  # did not get through
    Outcome.NO_ANSWER: 6,
    Outcome.BUSY: 7,
    Outcome.NOT_AVAILABLE: 3,
    Outcome.NOT_ALLOWED: 6,
    Outcome.NOT_FOUND: 5,  # wrong number
    Outcome.UNKNOWN: 6,
}


def last10(phone: str) -> str:
    """What amoCRM matches numbers by: their last ten digits."""
    return "".join(ch for ch in phone if ch.isdigit())[-10:]


def caller_key(e164: str) -> str:
    return CALLER.format(phone=e164)
