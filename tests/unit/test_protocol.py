"""Cloud PBX wire format: bodies, fields and the exact error shapes (docs/protocols/cloudpbx.md)."""

import base64
import json
from datetime import UTC, datetime

import pytest

from callbridge.pbx.cloudpbx import protocol
from callbridge.pbx.cloudpbx.notifications import parse_event, parse_history, parse_start
from callbridge.pbx.cloudpbx.protocol import CloudPbxError, decode_body

SEED_HISTORY = (
    "cmd=history&type=in&status=Success&phone=79101234567&user=user&duration=124"
    "&link=https%3A%2F%2Flink%2Ffile.mp3&crm_token=76fsd7tfs-fhjdgfdjsfsk-hfgsdguuuwoeiwey1111"
    "&callid=B10D0EB124F4E64AF4EA-1511"
)


def test_form_body_of_the_seed_is_decoded():
    fields = decode_body(SEED_HISTORY, False, "application/x-www-form-urlencoded")
    assert fields["cmd"] == "history"
    assert fields["link"] == "https://link/file.mp3"
    assert fields["callid"] == "B10D0EB124F4E64AF4EA-1511"


def test_json_body_with_the_same_fields_is_decoded():
    body = json.dumps({"cmd": "history", "duration": 124, "phone": "79101234567"})
    assert decode_body(body, False, "application/json") == {"cmd": "history", "duration": "124", "phone": "79101234567"}


def test_json_is_sniffed_without_a_content_type_and_base64_is_undone():
    body = base64.b64encode(b'{"cmd": "contact"}').decode()
    assert decode_body(body, True, "") == {"cmd": "contact"}


@pytest.mark.parametrize(
    ("body", "is_b64", "ctype"),
    [
        ("{not json", False, "application/json"),
        ("[1, 2]", False, "application/json"),
        ('{"cmd": {"nested": 1}}', False, "application/json"),
        ("!!!notbase64", True, ""),
        (base64.b64encode(b"\xff\xfe\xfa").decode(), True, "application/x-www-form-urlencoded"),
        ("a=%FF%FE", False, "application/x-www-form-urlencoded"),
    ],
)
def test_undecodable_bodies_are_invalid_parameters(body, is_b64, ctype):
    with pytest.raises(CloudPbxError) as caught:
        decode_body(body, is_b64, ctype)
    assert caught.value.status == 400
    assert caught.value.body == {"error": "Invalid parameters"}


def test_repeated_form_field_keeps_the_first_value():
    assert decode_body("user=andy&user=mike", False, "application/x-www-form-urlencoded") == {"user": "andy"}


def _history(**overrides):
    fields = decode_body(SEED_HISTORY, False, "application/x-www-form-urlencoded")
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def test_seed_history_parses_with_diversion_optional():
    history = parse_history(_history(), {})
    assert (history.direction, history.user, history.duration, history.status) == ("in", "user", 124, "Success")
    assert history.diversion is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": None},
        {"type": "sideways"},
        {"user": ""},
        {"phone": None},
        {"callid": "  "},
        {"status": None},
        {"duration": "abc"},
        {"duration": "-5"},
        {"duration": "nan"},
        {"duration": "1e12"},
        {"user": "x" * 300},
        {"user": "a\x00b"},
    ],
)
def test_missing_or_malformed_history_fields_are_400(overrides):
    with pytest.raises(CloudPbxError) as caught:
        parse_history(_history(**overrides), {})
    assert caught.value.status == 400


def test_history_accepts_the_fields_real_pbxs_add():
    history = parse_history(
        _history(
            type="OUT", ext="101", telnum="+74950000000", groupRealName="Sales", start="20170703T121110Z", rating="5"
        ),
        {},
    )
    assert history.direction == "out"
    assert (history.ext, history.telnum, history.department, history.rating) == ("101", "+74950000000", "Sales", "5")


def test_event_type_is_upper_cased_and_unknown_types_are_kept():
    base = {"type": "incoming", "phone": "79101234567", "user": "andy", "callid": "c1"}
    assert parse_event(base, {}).type == "INCOMING"
    assert parse_event({**base, "type": "PARKED"}, {}).type == "PARKED"
    with pytest.raises(CloudPbxError):
        parse_event({**base, "direction": "diagonal"}, {})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20170703T121110Z", datetime(2017, 7, 3, 12, 11, 10, tzinfo=UTC)),
        ("2017-07-07T16:14:08+03:00", datetime(2017, 7, 7, 13, 14, 8, tzinfo=UTC)),
        ("2017-07-07T16:14:08Z", datetime(2017, 7, 7, 16, 14, 8, tzinfo=UTC)),
        ("yesterday", None),
        ("2017-07-07T16:14:08", None),
        (None, None),
    ],
)
def test_start_times_become_utc_or_none(raw, expected):
    assert parse_start(raw) == expected


def test_error_factories_have_the_spec_bodies():
    assert protocol.invalid_token().body == {"error": "Invalid token"}
    assert protocol.invalid_token().status == 401


def test_an_empty_history_phone_is_a_withheld_number_a_missing_one_is_400():
    assert parse_history(_history(phone=""), {}).phone == ""
    assert parse_history(_history(phone="  "), {}).phone == ""
    with pytest.raises(CloudPbxError):
        parse_history(_history(phone=None), {})
