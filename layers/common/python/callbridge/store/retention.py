"""How long the Calls table keeps what a call leaves behind: its TTL attribute, set once per item."""

from __future__ import annotations

import time

from callbridge.infra.settings import get_settings

EXPIRES_AT = "expires_at"  # the Calls table's TimeToLiveSpecification (template.yaml)


def expires_at() -> int:
    """When an item written now expires, in epoch seconds (CallRetentionDays from now). Set when an
    item is first written and never moved: a late correction of a call keeps its date of expiry."""
    return int(time.time()) + get_settings().call_retention_s
