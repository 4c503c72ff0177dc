"""The Cloud PBX's `history` answer (CSV, docs/protocols/cloudpbx.md) read into rows: the field
example, the PBX's offset turned into UTC, a header or a Windows-1251 answer tolerated, and every
kind of bad line reported with its number and reason while the good lines around it are kept."""

from datetime import UTC, datetime

import pytest

from callbridge.pbx.cloudpbx.history_csv import compact_utc, decode_history, parse_history_csv

# The field notes' example line, with the uid completed.
EXAMPLE = "a252179d-0001,out,+79002445949,admin@ats23.example.ru,+74996861574,2017-07-07T16:14:08+03:00,0,11,"


def test_the_field_example_is_read_in_utc() -> None:
    rows, bad = parse_history_csv(EXAMPLE + "\n")
    assert bad == []
    [row] = rows
    assert (row.uid, row.type, row.direction, row.client) == ("a252179d-0001", "out", "out", "+79002445949")
    assert (row.account, row.via, row.wait, row.duration, row.record) == (
        "admin@ats23.example.ru", "+74996861574", 0, 11, None,
    )  # fmt: skip
    assert row.start == datetime(2017, 7, 7, 13, 14, 8, tzinfo=UTC)
    assert row.raw["start"] == "2017-07-07T16:14:08+03:00"  # kept as the PBX wrote it


def test_missed_is_an_incoming_call_and_a_header_and_blank_lines_are_skipped() -> None:
    text = (
        "uid,type,client,account,via,start,wait,duration,record\r\n"
        "m-1,missed,79101234567,g_5f0c@ats23,74996861574,2024-05-01T09:00:00Z,35,0,\r\n\r\n"
        "r-1,in,79101234567,andy,74996861574,2024-05-01T09:05:00+00:00,3,120,https://pbx/rec/r-1.mp3,5\r\n"
    )
    rows, bad = parse_history_csv(text)
    assert bad == []
    assert [(r.uid, r.direction, r.type) for r in rows] == [("m-1", "in", "missed"), ("r-1", "in", "in")]
    assert rows[1].record == "https://pbx/rec/r-1.mp3" and rows[1].raw["extra"] == "5"  # a tenth column kept


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("cut-1,in,79101234567,andy", "4 columns, 9 expected"),
        ("t-1,transfer,79101234567,andy,749,2024-05-01T09:00:00Z,0,1,", "unknown type"),
        ("s-1,in,79101234567,andy,749,2024-05-01 09:00:00,0,1,", "start is not an ISO-8601 time with an offset"),
        ("s-2,in,79101234567,andy,749,07.07.2017 16:14,0,1,", "start is not an ISO-8601 time with an offset"),
        ("d-1,in,79101234567,andy,749,2024-05-01T09:00:00Z,0,NaN,", "wait or duration is not a number of seconds"),
        ("d-2,in,79101234567,andy,749,2024-05-01T09:00:00Z,-3,1,", "wait or duration is not a number of seconds"),
        (",in,79101234567,andy,749,2024-05-01T09:00:00Z,0,1,", "no uid"),
        ("a-1,in,79101234567,,749,2024-05-01T09:00:00Z,0,1,", "a field is missing or too long"),
    ],
)
def test_a_bad_line_is_reported_by_number_and_the_others_are_kept(line: str, reason: str) -> None:
    rows, bad = parse_history_csv("\n".join([EXAMPLE, line, EXAMPLE.replace("0001", "0002")]))
    assert [r.uid for r in rows] == ["a252179d-0001", "a252179d-0002"]
    assert [(b.line, b.reason) for b in bad] == [(2, reason)]
    assert "79101234567" not in bad[0].reason  # the report never carries the line's content


def test_the_answer_is_utf8_with_or_without_bom_and_windows_1251_is_read_too() -> None:
    line = "u-1,in,79101234567,Петров,74996861574,2024-05-01T09:00:00Z,0,5,"
    assert decode_history(line.encode("utf-8")) == line
    assert decode_history(b"\xef\xbb\xbf" + line.encode("utf-8")) == line
    assert decode_history(line.encode("cp1251")) == line
    assert parse_history_csv(decode_history(line.encode("cp1251")))[0][0].account == "Петров"


def test_requests_name_times_in_compact_utc() -> None:
    from datetime import timedelta, timezone

    moscow = datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=3)))
    assert compact_utc(moscow) == "20240501T090005Z"
