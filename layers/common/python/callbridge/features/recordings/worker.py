"""The recordings worker: one queued fetch `{account, call_id}` → the call's recording in S3.

`core.handoff.queue_recording_fetch` queues a message when a call is stored with an http(s) link; the
RecordingFetchFunction hands each message to `handle_message`. What ends up on the call item:

    recording_state   "stored" | "unavailable"
    recording         {key, size, content_type, sha256, fetched_at}      (stored)
    recording_error   why it is unavailable: the error type and message, never the link itself

- Idempotent: a call already `stored` is not downloaded again; a retried download writes the same
  key, so the file is stored once.
- Permanent errors (4xx, blocked address, disallowed scheme, too large, bad URL) mark the recording
  unavailable and the message succeeds: trying again would not help.
- Anything else (5xx, timeouts, network, S3) raises RetryLater: the message is made visible again
  after a backoff that doubles with every receive (RECORDING_RETRY_BASE_SECONDS × 2^(n-1), at most
  15 minutes, at least the server's Retry-After). On the last receive (RECORDING_MAX_ATTEMPTS, the
  queue's maxReceiveCount) the call is marked unavailable first, then the failure moves the message
  to the dead-letter queue, where the operator finds it. The call itself is final and delivered
  whatever happens to its recording.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from callbridge import registry
from callbridge.core import handoff
from callbridge.core.accounts import UnknownAccount, get_account
from callbridge.features.recordings.layout import recording_key
from callbridge.features.recordings.storage import fetch_to_s3
from callbridge.infra import aws, clock
from callbridge.infra.netguard import PermanentFetchError, TransientFetchError
from callbridge.infra.observability import bind, logger, metric
from callbridge.infra.settings import SettingsError, get_settings
from callbridge.store import calls
from callbridge.store.retention import expires_at
from callbridge.store.updates import Update

STORED = "stored"
UNAVAILABLE = "unavailable"
ERASED = "erased"  # deleted on a data-subject request (features/erasure.py): never fetched again
MAX_RETRY_DELAY_S = 900
_REASON_LIMIT = 300


class RetryLater(Exception):
    """The fetch failed for now; the queue should deliver the message again after `delay_s`."""

    def __init__(self, reason: str, delay_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


@dataclass(frozen=True, slots=True)
class FetchResult:
    status: str  # stored | already_stored | unavailable | no_recording | unknown_call | malformed | erased


def retry_delay(attempt: int, retry_after_s: float | None = None) -> int:
    """Seconds before the next try after failed try number `attempt` (1-based)."""
    base = get_settings().recording_retry_base_s
    delay = min(base * 2 ** max(0, attempt - 1), MAX_RETRY_DELAY_S)
    if retry_after_s is not None:
        delay = max(delay, min(int(retry_after_s + 0.999), MAX_RETRY_DELAY_S))
    return int(delay)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_REASON_LIMIT]


def _mark_stored(account: str, call_id: str, recording: dict[str, Any], kept_days: int) -> bool:
    """False when the call is gone or was erased while its file was downloaded. The call is kept at
    least as long as its recording (`kept_days`, S3's days for it)."""
    update = Update().set(
        recording=recording,
        recording_state=STORED,
        updated_at=clock.iso(clock.now()),
        expires_at=expires_at(recording_days=kept_days),
    )
    update.names["#cs"] = "recording_state"
    update.values[":cerased"] = {"S": ERASED}
    if not calls.update_call(
        account, call_id, update, condition="attribute_exists(pk) AND (attribute_not_exists(#cs) OR #cs <> :cerased)"
    ):
        return False
    handoff.recording_settled(account, call_id, stored=True)
    return True


def _mark_unavailable(account: str, call_id: str, reason: str) -> None:
    update = Update().set(recording_state=UNAVAILABLE, recording_error=reason, updated_at=clock.iso(clock.now()))
    # Never over a recording that a twin delivery of the same message stored meanwhile, nor over a
    # call erased meanwhile.
    update.names["#cs"] = "recording_state"
    update.values[":cstored"] = {"S": STORED}
    update.values[":cerased"] = {"S": ERASED}
    if calls.update_call(
        account,
        call_id,
        update,
        condition="attribute_exists(pk) AND (attribute_not_exists(#cs) OR NOT #cs IN (:cstored, :cerased))",
    ):
        try:
            handoff.recording_settled(account, call_id, stored=False)
        except Exception:  # a delivery left waiting for it sends nothing more either way
            logger().exception("could not tell the deliveries that a recording was given up")


def fetch_recording(account_id: str, call_id: str, *, attempt: int = 1) -> FetchResult:
    """Download the recording of one call into the recordings bucket (see the module docstring)."""
    log = logger()
    call = calls.get_call(account_id, call_id)
    if call is None:
        return FetchResult("unknown_call")
    if call.get("recording_state") == STORED:
        # A retried message: telling the deliveries again is harmless (a recording update is sent
        # once), and it is how a failure to tell them the first time is made good.
        handoff.recording_settled(account_id, call_id, stored=True)
        return FetchResult("already_stored")
    link = str(call.get("recording_url") or "")
    if not link.lower().startswith(("https://", "http://")):
        return FetchResult("no_recording")
    try:
        account = get_account(account_id)
    except UnknownAccount:
        _mark_unavailable(account_id, call_id, "the account no longer exists")
        return FetchResult("unavailable")
    settings = get_settings()
    if not settings.recordings_bucket:
        raise SettingsError("environment variable RECORDINGS_BUCKET is not set")
    # The account's trusted host:ports hold for its recordings too (the PBX API serving them, often).
    allow_hosts = [*account.settings.recordings.allow_hosts, *account.settings.trusted_hosts]
    try:
        stored = fetch_to_s3(
            registry.pbx_adapter(account.pbx_kind).recording_fetch_url(
                account, link
            ),  # adds a PBX key the stored link must not carry
            bucket=settings.recordings_bucket,
            key=recording_key(account_id, call_id, link, account.settings.recordings.retention_days),
            allow_hosts=allow_hosts,
            max_bytes=settings.recording_max_bytes,
            timeout_s=settings.recording_fetch_timeout_s,
        )
    except PermanentFetchError as exc:
        _mark_unavailable(account_id, call_id, _reason(exc))
        log.warning("recording unavailable", extra={"call_id": call_id, "reason": _reason(exc)})
        return FetchResult("unavailable")
    except Exception as exc:  # transient fetch errors, S3 and DynamoDB errors: try again later
        retry_after = exc.retry_after_s if isinstance(exc, TransientFetchError) else None
        if attempt >= settings.recording_max_attempts:
            _mark_unavailable(account_id, call_id, f"gave up after {attempt} tries: {_reason(exc)}"[:_REASON_LIMIT])
            log.error("recording fetch gave up", extra={"call_id": call_id, "attempt": attempt, "reason": _reason(exc)})
            raise RetryLater(_reason(exc), 0) from exc
        delay = retry_delay(attempt, retry_after)
        log.warning(
            "recording fetch failed, will retry",
            extra={"call_id": call_id, "attempt": attempt, "retry_in_s": delay, "reason": _reason(exc)},
        )
        raise RetryLater(_reason(exc), delay) from exc
    recording = {
        "key": stored.key,
        "size": stored.size,
        "content_type": stored.content_type,
        "sha256": stored.sha256,
        "fetched_at": clock.iso(clock.now()),
    }
    kept_days = account.settings.recordings.retention_days or settings.recording_link_ttl_s // 86400
    if not _mark_stored(account_id, call_id, recording, kept_days):
        # Erased (or deleted) while the file was on its way: the file must not outlive the call.
        aws.s3().delete_object(Bucket=settings.recordings_bucket, Key=stored.key)
        log.info("recording dropped: its call was erased meanwhile", extra={"call_id": call_id})
        return FetchResult("erased")
    log.info("recording stored", extra={"call_id": call_id, "size": stored.size, "content_type": stored.content_type})
    return FetchResult("stored")


def _defer(receipt_handle: str, delay_s: int) -> None:
    """Make the message visible again after `delay_s` instead of the queue's VisibilityTimeout."""
    queue_url = get_settings().recording_queue_url
    if not queue_url or not receipt_handle:
        return
    try:
        aws.sqs().change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay_s)
    except Exception:  # the queue's own visibility timeout still brings the message back
        logger().exception("could not change the visibility of a recording fetch message")


_RESULT_METRICS = {"stored": "RecordingsFetched", "unavailable": "RecordingsFailed"}


def handle_message(body: str, *, attempt: int, receipt_handle: str) -> FetchResult:
    """One queue message. Raises RetryLater (after rescheduling the message) when it should be
    delivered again; returns normally when the message is done with."""
    try:
        message = json.loads(body)
        account_id, call_id = str(message["account"]), str(message["call_id"])
    except (ValueError, TypeError, KeyError):
        logger().error("malformed recording fetch message dropped")
        return FetchResult("malformed")
    bind(account=account_id, call_id=call_id)
    try:
        result = fetch_recording(account_id, call_id, attempt=attempt)
    except RetryLater as exc:
        _defer(receipt_handle, exc.delay_s)
        raise
    if result.status in _RESULT_METRICS:
        metric(_RESULT_METRICS[result.status])
    logger().info("recording fetch done", extra={"account": account_id, "call_id": call_id, "result": result.status})
    return result
