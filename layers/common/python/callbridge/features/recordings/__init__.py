"""Call recordings: SSRF-safe download of a PBX's recording link, streamed into S3.

The one call a worker needs:

    from callbridge.features.recordings import fetch_to_s3, TransientFetchError, PermanentFetchError

    try:
        stored = fetch_to_s3(
            link,                               # the PBX's recording URL
            bucket=recordings_bucket,
            key=f"{account}/{call_id}",         # same key on retry: stored once
            allow_hosts=account_allowed_hosts,  # exact hostnames the account trusts (private, http)
            max_bytes=500 * 1024 * 1024,
            timeout_s=600,
        )
        # stored.key, stored.size, stored.content_type, stored.sha256 -> record on the call
    except TransientFetchError as exc:          # 5xx, 408, 429, timeouts, network: retry later
        ...                                     # exc.status, exc.retry_after_s (seconds or None)
    except PermanentFetchError as exc:          # 4xx, bad URL, BlockedAddress, DisallowedScheme,
        ...                                     # TooLarge: mark the recording unavailable

S3 errors propagate as botocore exceptions. Modules:

    callbridge.infra.netguard  the policy (what may be fetched), the socket-level guard, the error types
    fetch     open_download(): streaming GET with manual, re-checked redirects and an overall deadline
    storage   fetch_to_s3(): the body into S3 (multipart in 8 MiB parts), encrypted, aborted on failure
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.features.recordings.fetch import Download, open_download
    from callbridge.features.recordings.storage import StoredRecording, content_type_for, fetch_to_s3
    from callbridge.infra.netguard import (
        BlockedAddress,
        DisallowedScheme,
        FetchError,
        PermanentFetchError,
        TooLarge,
        TransientFetchError,
    )

_FETCH = frozenset({"Download", "open_download"})
_STORAGE = frozenset({"StoredRecording", "content_type_for", "fetch_to_s3"})
_GUARD = frozenset(
    {"BlockedAddress", "DisallowedScheme", "FetchError", "PermanentFetchError", "TooLarge", "TransientFetchError"}
)


def __getattr__(name: str) -> Any:
    """The names above, loaded when first named: the playback and the call history import this
    package's `playback`, which serves a stored file and never downloads one, and must not pay for
    httpx (tens of ms of their cold start, bench/benchmark.py) through this package's own import."""
    if name in _FETCH:
        from callbridge.features.recordings import fetch

        return getattr(fetch, name)
    if name in _STORAGE:
        from callbridge.features.recordings import storage

        return getattr(storage, name)
    if name in _GUARD:
        from callbridge.infra import netguard

        return getattr(netguard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlockedAddress",
    "DisallowedScheme",
    "Download",
    "FetchError",
    "PermanentFetchError",
    "StoredRecording",
    "TooLarge",
    "TransientFetchError",
    "content_type_for",
    "fetch_to_s3",
    "open_download",
]
