"""What we keep of a call filed in Bitrix24 (callbridge.store.crm_calls), and the register
parameters, shared by the delivery (callbridge.crm.bitrix24.connector), the cards and the clicks:
whoever starts a call in Bitrix24 first stores the parameters every later attempt registers with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callbridge.crm.bitrix24.settings import Bitrix24Settings

TYPE_OUT, TYPE_IN = 1, 2
# PHONE_NUMBER of a call without a client number (a withheld caller id): Bitrix24 requires one and
# documents no format for it, so the call is filed and its statistics show this word.
WITHHELD = "withheld"
# The stored item's fields (callbridge.store.crm_calls).
REGISTER, CALL_ID, FINISHED, RECORDED = "register", "bitrix_call_id", "finished_at", "record_attached"
SHOWN = "cards_shown"  # the USER_IDs whose card is up (a string set)
SENT = "finish_sent_at"  # a finish or recording was sent; its answer may have been lost


def bitrix_time(moment: datetime) -> str:
    """ISO 8601 with its offset, in UTC (Bitrix24 shows it in each user's own zone)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def register_params(
    settings: Bitrix24Settings,
    who: Mapping[str, Any],
    phone: str,
    direction: str,
    started: str,
    line: str | None,
    call_id: str,
) -> dict[str, Any]:
    """`call_id`: our id of the call, sent as EXTERNAL_CALL_ID. Bitrix24 answers a register with the
    same number, type, user and line within 30 minutes with the CALL_ID it gave before
    (docs/protocols/bitrix24.md, quirk 1): without an id of the physical call, a caller who rings the
    same manager twice would be one call in Bitrix24."""
    params: dict[str, Any] = {
        **who,
        "EXTERNAL_CALL_ID": call_id,
        "PHONE_NUMBER": phone,
        "CALL_START_DATE": started,
        "TYPE": TYPE_OUT if direction == "out" else TYPE_IN,
        # Never a lead for a withheld caller: every anonymous call would land on one lead "withheld".
        "CRM_CREATE": 1 if settings.crm_create and phone != WITHHELD else 0,
        "SHOW": 0,  # cards are shown by telephony.externalcall.show, to every ringing manager
    }
    if settings.line_number or line:
        params["LINE_NUMBER"] = settings.line_number or line
    return params
