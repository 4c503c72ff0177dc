"""How long an account's recordings are kept: the retention tiers (docs/accounts.md, "Recordings").

S3 deletes recordings by the bucket's lifecycle rules, which are fixed when the stack is deployed:
one rule per tier, matching the tier's key prefix (`_retention/{days}d/`). An account picks its tier
with `recordings.retention_days`; its recordings are stored under that prefix, so the rule that
expires them is the one of the account's tier, and nothing per object has to be set or paid for
(an object tag would cost $0.01 per 10,000 objects a month).

An account without `retention_days` keeps the stack's `RecordingRetentionDays`: its recordings are
stored as they always were (`{account}/{call id}/…`, the "default" rules of template.yaml, one per
first character an account id may have, so that no tier key is matched by them). The tiers begin
with `_`, which no account id begins with.

A value that is not a tier is refused, not rounded: a retention is a promise both ways - to the
callers (a privacy notice says how long they are kept) and to the business (a dispute needs the
recording) - and rounding breaks one of them silently.
"""

from __future__ import annotations

from typing import Final

# Days. 30 and 90 days for quality checks, 6 months, then the years that record-keeping rules ask
# for (1, 2, 3, 5, 7) and 10, the longest a signed link may live (infra/settings.py).
TIERS: Final = (30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)
TIER_ROOT: Final = "_retention/"
# Glacier Instant Retrieval bills at least 90 days: a tier is moved there only when its recordings
# then stay at least that long, so its bill is never above staying in Standard.
GLACIER_IR_MINIMUM_DAYS: Final = 90


class NotATier(ValueError):
    """A retention that is no tier; the message names the nearest tiers."""


def tier_prefix(days: int) -> str:
    """The key prefix of a tier's recordings: the lifecycle rule of that tier matches it."""
    return f"{TIER_ROOT}{check_tier(days)}d/"


def check_tier(days: int) -> int:
    """`days` when it is a tier, else NotATier naming the tiers around it."""
    if days in TIERS:
        return days
    shorter = [t for t in TIERS if t < days]
    longer = [t for t in TIERS if t > days]
    nearest = " or ".join(str(t) for t in (shorter[-1:] + longer[:1]))
    listed = ", ".join(map(str, TIERS))
    hint = f"choose {nearest}; " if nearest else ""
    raise NotATier(f"{days} days is not a retention tier: {hint}the tiers are {listed} days")
