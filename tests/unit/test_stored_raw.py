"""The source record as stored (store/calls.py stored_raw): bounded for DynamoDB's item limit,
whatever source it came from (Cloud PBX forms, telediscount queries, ccrm.pl's nested records)."""

from __future__ import annotations

import json

from callbridge.store import calls


def test_a_small_record_is_kept_as_sent() -> None:
    raw = {"phone": "79101234567", "nested": {"a": [1, 2]}}
    stored = calls.stored_raw(raw)
    assert (json.loads(stored.text), stored.truncated) == (raw, False)


def test_a_nested_value_over_the_limit_becomes_its_truncated_json() -> None:
    record = {"uuid": "u-1", "userTalk": {"receivers": [{"internal": "101", "note": "n" * 10_000}]}}
    stored = calls.stored_raw(record)
    kept = json.loads(stored.text)
    assert stored.truncated and kept["uuid"] == "u-1"
    assert isinstance(kept["userTalk"], str) and kept["userTalk"].startswith('{"receivers"')
    assert len(kept["userTalk"].encode()) <= calls.RAW_VALUE_BYTES
    assert kept[calls.RAW_CUT_NOTE]["userTalk"].startswith("truncated, ")


def test_the_whole_record_is_bounded_and_says_what_was_dropped() -> None:
    raw = {"callid": "c1", **{f"f{i}": "é" * 3000 for i in range(60)}, "k" * 5000: "v"}
    stored = calls.stored_raw(raw)
    kept = json.loads(stored.text)
    note = kept.pop(calls.RAW_CUT_NOTE)
    assert stored.truncated and kept["callid"] == "c1"
    assert len(json.dumps(kept, ensure_ascii=False).encode()) <= calls.RAW_BYTES
    assert len(stored.text.encode()) < 128 * 1024  # far below 400 KB, stored twice
    assert sum(v.startswith("dropped") for v in note.values()) >= 40
    assert all(len(k.encode()) <= calls.RAW_KEY_BYTES for k in kept)
    assert any(v.startswith("name truncated") for v in note.values())


def test_the_note_itself_is_bounded() -> None:
    stored = calls.stored_raw({f"f{i}": "x" * 5000 for i in range(300)})
    note = json.loads(stored.text)[calls.RAW_CUT_NOTE]
    assert len(note) == 101 and note["…"] == "200 more fields cut"
