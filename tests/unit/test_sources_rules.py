"""telediscount and ccrm.pl parsing rules (docs/protocols/telediscount.md, docs/protocols/ccrm.md), no sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callbridge.core.config import AccountConfig
from callbridge.core.terms import Direction, Outcome
from callbridge.pbx.ccrm.client import note_plain_text, parse_json
from callbridge.pbx.ccrm.protocol import final_call as ccrm_call
from callbridge.pbx.ccrm.protocol import local_to_utc, note_of, outcome_of, utc_to_local
from callbridge.pbx.telediscount.protocol import BadRecord, final_call, parse_setup_time, sip_digits, user_for_sip
from tests.fakes.ccrm import SEED_NOTES_BODY, SEED_RECORD

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1714564800", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("1714564800123", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        ("98798798797897", None),  # the vendor documentation's 14-digit placeholder
        ("20240501120000", None),
        ("", None),
        ("17145648OO", None),
        (None, None),
    ],
)
def test_setup_time(raw: str | None, expected: datetime | None) -> None:
    assert parse_setup_time(raw) == expected


def test_sip_accounts_match_without_leading_zeros() -> None:
    users = [{"pbx_user": "olga", "sip_account": "SIP/00000000672"}, {"pbx_user": "igor", "sip_account": "SIP/673"}]
    assert sip_digits("SIP/0000000672") == sip_digits("sip/00000000672") == "672"
    assert user_for_sip(users, "SIP/0000000672") == "olga"
    assert user_for_sip(users, "SIP/0000000674") is None


def test_seed_finished_webhook_never_loses_the_call_over_its_timestamp() -> None:
    fields = {
        "num_a": "79039998877",
        "num_m": "79037778899",
        "num_b": "SIP/0000000672",
        "setup_time": "98798798797897",
        "connection_time": "12",
        "waiting_time": "5",
        "api_call_id": "c1f926a8f5727b77f9cbf39d8f35d061",
    }
    call = final_call(
        fields, region="RU", users=[{"pbx_user": "olga", "sip_account": "SIP/00000000672"}], received=RECEIVED
    )
    assert call is not None
    assert (call.direction, call.outcome, call.user, call.duration) == (Direction.IN, Outcome.ANSWERED, "olga", 12)
    assert call.started_at == "2024-05-01T11:59:43Z"  # receipt minus talk and ring time
    assert "start_unparsed" in call.flags and call.extra["setup_time_raw"] == "98798798797897"
    missed = final_call({**fields, "connection_time": "0"}, region="RU", users=[], received=RECEIVED)
    assert missed is not None and missed.outcome == Outcome.MISSED and missed.recording_url is None
    outgoing = final_call(
        {
            "api_call_id": "x1",
            "num_a": "SIP/672",
            "num_b": "74951234567",
            "connection_time": "0",
            "setup_time": "1714564800",
        },
        region="RU",
        users=[],
        received=RECEIVED,
    )
    assert outgoing is not None and (outgoing.direction, outgoing.outcome, outgoing.phone) == (
        Direction.OUT,
        Outcome.NO_ANSWER,
        "+74951234567",
    )
    assert (
        final_call({"api_call_id": "i1", "num_a": "SIP/1", "num_b": "SIP/2"}, region="RU", users=[], received=RECEIVED)
        is None
    )
    with pytest.raises(BadRecord):
        final_call({"num_a": "79039998877"}, region="RU", users=[], received=RECEIVED)


def test_seed_ccrm_call_in_poland_is_stored_in_utc() -> None:
    assert local_to_utc("2022-12-29 11:24:57", "Europe/Warsaw") == datetime(2022, 12, 29, 10, 24, 57, tzinfo=UTC)
    assert local_to_utc("2024-07-01 12:00:00", "Europe/Warsaw") == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)  # CEST
    assert utc_to_local(datetime(2022, 12, 29, 10, 24, 57, tzinfo=UTC), "Europe/Warsaw") == datetime(
        2022, 12, 29, 11, 24, 57
    )
    users = [{"pbx_user": "jan", "ccrm_internal": "107"}]
    call = ccrm_call(
        SEED_RECORD, region="PL", timezone="Europe/Warsaw", users=users, received=RECEIVED, notes=[{"text": "n"}]
    )
    assert call is not None
    assert call.started_at == "2022-12-29T10:24:57Z" and call.start_source.value == "pbx"
    assert (call.direction, call.outcome, call.user, call.duration) == (Direction.IN, Outcome.ANSWERED, "jan", 368)
    assert (call.phone, call.our_number) == ("+48333333333", "+48777888999")
    assert call.extra["tags"] == ["Billing"] and call.extra["notes"] == [{"text": "n"}]


@pytest.mark.parametrize(
    ("status", "direction", "outcome"),
    [
        ("ANSWERED", Direction.IN, Outcome.ANSWERED),
        ("noAnswer", Direction.IN, Outcome.MISSED),
        ("NOANSWER", Direction.OUT, Outcome.NO_ANSWER),
        ("Busy", Direction.OUT, Outcome.BUSY),
        ("failed", Direction.IN, Outcome.UNKNOWN),
    ],
)
def test_ccrm_status_any_case(status: str, direction: Direction, outcome: Outcome) -> None:
    assert outcome_of(status, direction) == outcome


def test_ccrm_internal_calls_are_not_client_calls() -> None:
    internal = {**SEED_RECORD, "callDirection": "internal"}
    assert ccrm_call(internal, region="PL", timezone="Europe/Warsaw", users=[], received=RECEIVED) is None


def test_notes_rich_text_becomes_plain_text_even_from_the_seeds_broken_json() -> None:
    body = parse_json(SEED_NOTES_BODY.decode(), "notes")
    assert [note_plain_text(n["text"]) for n in body["data"]] == ["Notatka do tego połączenia"]
    # Repaired, not just salvaged: each note keeps its author and time (`created`, read as UTC).
    assert [note_of(n) for n in body["data"]] == [
        {"text": "Notatka do tego połączenia", "author": "Jan Kowalski",
         "author_id": "a26b956b-ce46-48f4-a1bd-b657136d4148", "created_at": "2022-12-29T12:13:35Z"}
    ]  # fmt: skip
    broken_beyond_repair = '{"data":[{"text":"{"blocks":[{"key":"k","text":"Only the text","type":"unstyled"}]}",}'
    assert [note_of(n) for n in parse_json(broken_beyond_repair, "notes")["data"]] == [{"text": "Only the text"}]
    document = '{"blocks":[{"text":"Line 1"},{"text":"Line 2"}],"entityMap":{}}'
    assert note_plain_text(document) == "Line 1\nLine 2"
    assert note_plain_text("plain words") == "plain words"


def test_ccrm_accounts_default_to_warsaw_time() -> None:
    pbx = {"kind": "ccrm", "base_url": "https://x.ccrm.pl", "api_key": "ccrm-key-0001"}
    assert AccountConfig.model_validate({"account": "a", "phone_region": "PL", "pbx": pbx}).timezone == "Europe/Warsaw"
    explicit = {"account": "a", "phone_region": "PL", "pbx": pbx, "timezone": "UTC"}
    assert AccountConfig.model_validate(explicit).timezone == "UTC"
