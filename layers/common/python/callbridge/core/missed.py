"""Whom a missed call belongs to, as far as we know it ourselves: the caller's responsible manager
in our directory (the account's `contacts`), else the manager a CRM named for the number while the
call rang (the routing cache, while it lasts). The CRM connectors fall back from it to the account's
owner of missed calls and to their default user (callbridge.crm.base.DeliveryContext)."""

from __future__ import annotations

from callbridge.infra.observability import logger
from callbridge.store import contacts, routing_cache


def responsible(account_id: str, e164: str) -> str | None:
    """The PBX user responsible for `e164`; None when nobody is (or it cannot be read now: the call
    then goes to the fallback owner rather than waiting)."""
    if not e164.startswith("+"):
        return None
    try:
        contact = contacts.find_by_phone(account_id, e164)
        if contact and contact.get("responsible"):
            return str(contact["responsible"])
        entry = routing_cache.cached(account_id, e164)
    except Exception:
        logger().warning("could not read the responsible manager of a caller")
        return None
    return str(entry["pbx_user"]) if entry and entry.get("pbx_user") else None
