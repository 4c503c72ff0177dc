"""How long the Calls table keeps what a call leaves behind: its TTL attribute, set once per item."""

from __future__ import annotations

import time

from callbridge.infra.settings import get_settings

EXPIRES_AT = "expires_at"  # the Calls table's TimeToLiveSpecification (template.yaml)


# A call outlives its recording by this much: a recording is found, played back and erased by a
# number through its call, and S3 counts its days from the upload, which may come hours after the call.
RECORDING_MARGIN_S = 7 * 86400


def expires_at(recording_days: int | None = None) -> int:
    """When an item written now expires, in epoch seconds: CallRetentionDays from now, and for a call
    whose recording was just stored, at least `recording_days` (the days S3 keeps that recording) and
    RECORDING_MARGIN_S from now. Set when an item is first written; only a stored recording moves a
    call's, so a late correction of a call keeps its date of expiry."""
    keep = get_settings().call_retention_s
    if recording_days is not None:
        keep = max(keep, recording_days * 86400 + RECORDING_MARGIN_S)
    return int(time.time()) + keep
