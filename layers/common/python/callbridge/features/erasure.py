"""A data-subject request: a caller's recordings and stored number erased (`callbridge recordings
delete`, docs/cli.md).

`erase_number(account, "8 910 123-45-67")` erases every call of that number and every other trace of
it in the account; `erase_call(account, call id)` one call. For each call of the number:

- its recording files: every object under the call's prefixes, whatever layout or retention tier
  it was stored under (features/recordings/layout.py);
- the call item is kept, anonymised: `phone` becomes "erased", the number as sent, the source's
  record, the recording and its link are removed, flags `erased` and `no_number` (a CRM that files
  calls by number gets nothing more of it), `recording_state` "erased" (playback answers 404, the
  recordings worker never fetches it again). Kept, it still counts in the manager's figures, and its
  markers keep a reconciliation or backfill from storing it again from the PBX;
- its timeline (EVT items) keeps its markers without their `raw` record; its deliveries still due
  or parked are settled as not applicable, and every delivery loses the CRM's answer; the CRMs'
  own ids of the call (CRMCALL items) are deleted.

Everywhere else in the account, an item whose key holds the number is deleted (callback tasks,
waiting clicks, the contact and routing cache entries of that number, a PBX message), a contact of
several phones loses that one, and any other attribute holding it is removed. The number is found in
every form it is written in: E.164, digits with the country code, with the trunk or an international
prefix, the national number alone, with or without spaces, dots, dashes and brackets (`Number`).

Items of the Accounts table are not changed: a number there is a setting of the account's file,
which the operator changes and applies again (`Report.left`). The CRMs keep what they were sent:
the owner deletes it there (docs/cli.md). Never logged: the number, even hashed (a hash of a phone
number is undone by hashing every number); the log line has counts only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callbridge.core import phones
from callbridge.core.accounts import get_account
from callbridge.core.terms import Flag
from callbridge.features.recordings.layout import call_prefixes
from callbridge.features.recordings.worker import ERASED
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.store import erasure as store
from callbridge.store.keys import (
    CALL_SK,
    CALLBACK_PREFIX,
    CLICK_PREFIX,
    CRM_CALL_PREFIX,
    DELIVERY_PREFIX,
    EVENT_PREFIX,
    MESSAGE_PREFIX,
    call_id_of,
    call_pk,
)

ERASED_PHONE = "erased"  # the call item's `phone` once its number is erased
# What a call item or its neighbours hold of the caller beyond the number itself: removed whether
# or not the number is found in them (a record may name the caller, a CRM's answer its customer).
CALL_PERSONAL = ("phone_raw", "history_raw", "recording_url", "recording", "recording_error")
EVENT_PERSONAL = ("raw",)
DELIVERY_PERSONAL = ("crm_answer", "last_error")
DELIVERY_UNSETTLED = ("dlv_pk", "dlv_due", "lease_until", "lease_owner", "redelivery_at")
# Partitions that exist for one number, or a source's record that came from it: deleted whole.
_WHOLE_ITEM_PREFIXES = (CALLBACK_PREFIX, CLICK_PREFIX, MESSAGE_PREFIX)
# International call prefixes before a country code: the ITU's 00, Russia's 8~10, North America's 011.
_INTERNATIONAL = ("00", "810", "011")
# A stretch of text a number may be written in: digits with the separators people and PBXs put in it.
_RUN = re.compile(r"[0-9][0-9 ()\-.\u00a0/]*")
_GROUP = re.compile(r"[0-9]+")


class NotANumber(ValueError):
    """The text given is no phone number (in the account's region)."""


class UnknownCall(LookupError):
    """No such call in the account."""


@dataclass(frozen=True, slots=True)
class Number:
    """A caller's number and the ways it is written."""

    e164: str
    national: str  # the national significant number: 9101234567 of +79101234567
    prefixes: frozenset[str]  # the digits that may come before it: "", 7, 8, 007, 8107, 0117

    @classmethod
    def read(cls, text: str, region: str) -> Number:
        """The number a person typed, read as the account reads its callers' (core/phones.py)."""
        e164 = phones.normalize(text, region).e164
        if e164 is None:
            raise NotANumber(f"not a phone number in region {region}: give it with its country code, e.g. +7 910 …")
        return cls.of(e164)

    @classmethod
    def of(cls, e164: str) -> Number:
        import phonenumbers

        parsed = phonenumbers.parse(e164, None)
        national = phonenumbers.national_significant_number(parsed)
        code = str(parsed.country_code)
        trunk = phones.national_digits(e164)[: -len(national)]
        prefixes = {"", code, trunk, *(international + code for international in _INTERNATIONAL)}
        return cls(e164=e164, national=national, prefixes=frozenset(prefixes))

    def found_in(self, value: Any) -> bool:
        """Whether `value` (a stored attribute: text, number, set, list or map, keys included) holds
        this number in any of its forms. Digits are read in groups as written, so a longer number
        that ends with the same digits (another country's) is not this one."""
        if isinstance(value, str):
            return any(self._in_run(run) for run in _RUN.findall(value))
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float):
            return self._in_run(str(value))
        if isinstance(value, Mapping):
            return any(self.found_in(k) or self.found_in(v) for k, v in value.items())
        if isinstance(value, Iterable):
            return any(self.found_in(v) for v in value)
        return False

    def _in_run(self, run: str) -> bool:
        groups = _GROUP.findall(run)
        longest = len(self.national) + max(map(len, self.prefixes))
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > longest:
                    break
                if digits.endswith(self.national) and digits[: -len(self.national)] in self.prefixes:
                    return True
        return False


@dataclass
class Report:
    """What an erasure did (or, dry, would do): counts only, never the number."""

    calls: int = 0  # calls of the number anonymised
    recordings: int = 0  # recording files deleted
    deleted: Counter[str] = field(default_factory=Counter)  # items deleted, by table
    rewritten: Counter[str] = field(default_factory=Counter)  # items with attributes removed, by table
    left: list[str] = field(default_factory=list)  # what the operator must do himself

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "recordings": self.recordings,
            "items_deleted": dict(self.deleted),
            "items_rewritten": dict(self.rewritten),
            "left": list(self.left),
        }


def erase_number(account_id: str, text: str, *, dry_run: bool = False) -> Report:
    """Erase every call of a number in an account and every other item that holds it."""
    account = get_account(account_id)
    number = Number.read(text, account.settings.phone_region)
    report = Report()
    calls_of_number: list[str] = []
    elsewhere: list[tuple[store.Table, dict[str, Any]]] = []
    for table in store.tables():
        for item in store.account_items(table, account.id):
            if table.label == store.CALLS and item.get("sk") == CALL_SK and _is_callers(item, number):
                calls_of_number.append(call_id_of(account.id, str(item["pk"])))
            elif number.found_in(item):
                elsewhere.append((table, item))
    calls = _calls_table()
    for call_id in calls_of_number:
        _erase_call(calls, account.id, call_id, number, report, dry_run)
    erased_partitions = {call_pk(account.id, call_id) for call_id in calls_of_number}
    for table, item in elsewhere:
        if table.label == store.CALLS and item["pk"] in erased_partitions:
            continue  # done with its call
        _erase_item(table, item, number, report, dry_run)
    _log("number", report, dry_run)
    return report


def erase_call(account_id: str, call_id: str, *, dry_run: bool = False) -> Report:
    """Erase one call: its recording, and its number in the items of its partition."""
    account = get_account(account_id)
    calls = _calls_table()
    call = next((i for i in store.call_partition(calls, account.id, call_id) if i.get("sk") == CALL_SK), None)
    if call is None:
        raise UnknownCall(f"no call {call_id!r} in account {account.id}")
    e164 = phones.normalize(str(call.get("phone") or ""), None).e164  # None: a withheld or erased number
    number = Number.of(e164) if e164 else None
    report = Report()
    _erase_call(calls, account.id, call_id, number, report, dry_run)
    _log("call", report, dry_run)
    return report


def _calls_table() -> store.Table:
    return next(t for t in store.tables() if t.label == store.CALLS)


def _is_callers(call: Mapping[str, Any], number: Number) -> bool:
    return call.get("phone") == number.e164 or number.found_in(call.get("phone_raw"))


def _erase_call(
    calls: store.Table, account_id: str, call_id: str, number: Number | None, report: Report, dry_run: bool
) -> None:
    report.calls += 1
    # Files first: a run that stops half-way finds the call by its number again and finishes it.
    report.recordings += _delete_recordings(account_id, call_id, dry_run)
    for item in store.call_partition(calls, account_id, call_id):
        _erase_call_item(calls, item, number, report, dry_run)
    if not dry_run:
        # Again: a download that was under way when the first pass listed the files (the worker
        # deletes what it stores after this, seeing the call erased).
        report.recordings += _delete_recordings(account_id, call_id, dry_run)


def _erase_call_item(
    calls: store.Table, item: dict[str, Any], number: Number | None, report: Report, dry_run: bool
) -> None:
    sk = str(item["sk"])
    if (number is not None and _key_holds(calls, item, number)) or sk.startswith(CRM_CALL_PREFIX):
        _delete(calls, item, report, dry_run)
        return
    put: dict[str, Any] = {}
    personal: tuple[str, ...] = ()
    if sk == CALL_SK:
        personal = CALL_PERSONAL
        flags = {str(f) for f in item.get("flags") or ()} | {Flag.ERASED.value, Flag.NO_NUMBER.value}
        put = {"phone": ERASED_PHONE, "flags": flags, "erased_at": clock.iso(clock.now())}
        if item.get("recording_url") or item.get("recording"):
            put["recording_state"] = ERASED
    elif sk.startswith(EVENT_PREFIX):
        personal = EVENT_PERSONAL
    elif sk.startswith(DELIVERY_PREFIX):
        personal = DELIVERY_PERSONAL
        if "dlv_pk" in item:  # due or parked: it must never go out again
            personal += DELIVERY_UNSETTLED
            put = {
                "state": "not_applicable",
                "reason": "the caller's number was erased on request",
                "settled_at": clock.iso(clock.now()),
            }
    holding = [name for name, value in item.items() if number is not None and number.found_in(value)]
    remove = sorted({*personal, *holding} - set(put) - set(calls.key))
    _rewrite(calls, item, [name for name in remove if name in item], put, report, dry_run)


def _erase_item(table: store.Table, item: dict[str, Any], number: Number, report: Report, dry_run: bool) -> None:
    if table.label == store.ACCOUNTS:
        report.left.append(
            f"an item of the accounts table ({str(item.get('sk', '')).split('#')[0]}) holds the number:"
            " a setting of the account's file; change the file and apply it"
        )
        return
    if _key_holds(table, item, number) or str(item.get("pk", "")).startswith(_WHOLE_ITEM_PREFIXES):
        _delete(table, item, report, dry_run)
        return
    put: dict[str, Any] = {}
    if table.label == store.CONTACTS and isinstance(item.get("phones"), list):
        # Another phone of the same contact: it keeps the contact, without this number.
        put["phones"] = [p for p in item["phones"] if not number.found_in(p)]
    remove = [n for n, value in item.items() if n not in put and n not in table.key and number.found_in(value)]
    _rewrite(table, item, remove, put, report, dry_run)


def _key_holds(table: store.Table, item: Mapping[str, Any], number: Number) -> bool:
    return any(number.found_in(item.get(name)) for name in table.key)


def _delete(table: store.Table, item: Mapping[str, Any], report: Report, dry_run: bool) -> None:
    if not dry_run:
        store.delete(table, item)
    report.deleted[table.label] += 1


def _rewrite(
    table: store.Table,
    item: Mapping[str, Any],
    remove: list[str],
    put: dict[str, Any],
    report: Report,
    dry_run: bool,
) -> None:
    if not remove and not put:
        return
    if dry_run or store.rewrite(table, item, remove=remove, put=put):
        report.rewritten[table.label] += 1


def _delete_recordings(account_id: str, call_id: str, dry_run: bool) -> int:
    bucket = get_settings().recordings_bucket
    if not bucket:
        return 0
    s3 = aws.s3()
    keys = [
        obj["Key"]
        for prefix in call_prefixes(account_id, call_id)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
    if not dry_run:
        for key in keys:
            s3.delete_object(Bucket=bucket, Key=key)
    return len(keys)


def _log(what: str, report: Report, dry_run: bool) -> None:
    logger().info("erasure done", extra={"erased": what, "dry_run": dry_run, **report.as_dict()})
