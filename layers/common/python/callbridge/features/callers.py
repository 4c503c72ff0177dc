"""Who is calling, while the phone rings: the answer to a PBX's caller lookup (core/webhooks.py
CallerLookup), from the caller directory and, for an account with CRMs, the responsible manager's
status and the CRMs under the contact budget (features/routing.py).

It is the contact path: its cold start is measured (bench/benchmark.py), so the routing module,
and with it the CRM connectors, loads only for an account with CRMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callbridge.core.accounts import Account
from callbridge.core.phones import known_e164, normalize
from callbridge.store.contacts import find_by_phone

if TYPE_CHECKING:
    from callbridge.store.accounts import ContactRead


def lookup(account: Account, phone: str, started: float, read: ContactRead | None = None) -> tuple[dict[str, str], str]:
    """(contact_name and responsible, each only when known; where that came from: directory,
    cache, crm, timeout, error, or none when there was nothing to look up). `started` is the
    request's arrival (time.monotonic()): the budget counts from it. `read`: a directory entry
    already read with the account (E.164, item or None; core/accounts.py authenticate_caller)."""
    try:
        found = _directory(account, phone, read)
    except Exception:  # the ringing phone gets a valid answer whatever happened to the directory
        from callbridge.infra.observability import logger

        logger().exception("contact lookup failed; answering without a contact", extra={"account": account.id})
        return {}, "error"
    if found is None:
        return {}, "none"
    e164, contact = found
    if account.has_crms:
        # Owner's status, and for a caller the directory does not know, the CRM under the budget.
        from callbridge.features.routing import SERVED, route

        routed = route(account, e164, contact, started)
        return routed, SERVED.get()
    if not contact:
        return {}, "directory"
    answer = {"contact_name": contact.get("name"), "responsible": contact.get("responsible")}
    return {k: str(v) for k, v in answer.items() if v}, "directory"


def _directory(account: Account, phone: str, read: ContactRead | None) -> tuple[str, dict[str, Any] | None] | None:
    """The caller's E.164 number and directory entry (None if not in the directory); None when the
    number is none. A known caller in the form the PBX sends (79101234567) is found without parsing
    the number (core/phones.py known_e164): phonenumbers loads only for the others. `read` stands
    for that key's GetItem only when it is that key's entry."""
    guessed = known_e164(phone, account.phone_country_code)
    if guessed is not None:
        contact = read[1] if read is not None and read[0] == guessed else find_by_phone(account.id, guessed, fast=True)
        if contact is not None:
            return guessed, contact
    e164 = normalize(phone, account.phone_region).e164
    if e164 is None:
        return None
    return e164, (find_by_phone(account.id, e164, fast=True) if e164 != guessed else None)
