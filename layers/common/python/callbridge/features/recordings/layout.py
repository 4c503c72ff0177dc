"""Where a call's recording is in the bucket: the key decides which lifecycle rule deletes it.

    {account}/{call id}/recording.{ext}                     an account without retention_days (and
                                                            every recording stored before the tiers):
                                                            the stack's RecordingRetentionDays
    _retention/{days}d/{account}/{call id}/recording.{ext}  an account with retention_days: its tier

The call id is URL-quoted (a '/' in it cannot make another level). Playback never builds a key: it
reads the one stored on the call (`recording.key`), so every layout plays back.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from callbridge.core import retention
from callbridge.features.recordings.storage import EXTENSION_TYPES


def recording_key(account: str, call_id: str, link: str, retention_days: int | None = None) -> str:
    """The key of a call's recording: the extension of the link's path when it is a known audio type
    (the stored Content-Type is what playback serves), `bin` otherwise; under the prefix of the
    account's retention tier when it has one."""
    path = urlsplit(link).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if extension not in EXTENSION_TYPES:
        extension = "bin"
    return f"{_tier(retention_days)}{account}/{quote(call_id, safe='')}/recording.{extension}"


def call_prefixes(account: str, call_id: str) -> list[str]:
    """Every prefix a recording of the call may be stored under, whatever retention its account had
    when it was stored (an account may change tier)."""
    own = f"{account}/{quote(call_id, safe='')}/"
    return [own, *(f"{retention.tier_prefix(days)}{own}" for days in retention.TIERS)]


def _tier(retention_days: int | None) -> str:
    return "" if retention_days is None else retention.tier_prefix(retention_days)
