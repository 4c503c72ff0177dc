"""docs/ccrm.md, "Summer time changes", tells operators how a ccrm.pl local time that occurs twice or
not at all becomes UTC. Its examples are read from the page and checked against the code that reads
`callDate` (callbridge.pbx.ccrm.protocol), so the page cannot drift from what is stored."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callbridge.infra import clock
from callbridge.pbx.ccrm.protocol import local_to_utc

ROOT = Path(__file__).resolve().parents[2]
ZONE = "Europe/Warsaw"
ROW = re.compile(r"^\| `(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)` \| `([0-9T:Z-]+)` \|", re.MULTILINE)


def _examples() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "ccrm.md").read_text(encoding="utf-8")
    section = text.split("## 5. Summer time changes", 1)
    assert len(section) == 2, "docs/ccrm.md has no section on summer time changes"
    return ROW.findall(section[1])


def _kind(local: str) -> str:
    naive = datetime.strptime(local, "%Y-%m-%d %H:%M:%S")
    first, second = naive.replace(tzinfo=ZoneInfo(ZONE)), naive.replace(tzinfo=ZoneInfo(ZONE), fold=1)
    if first.utcoffset() == second.utcoffset():
        return "plain"
    # A time in the gap does not survive a round trip through UTC; one that occurs twice does.
    round_trip = first.astimezone(ZoneInfo("UTC")).astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
    return "twice" if round_trip == naive else "missing"


def test_the_page_shows_both_kinds_of_local_time_a_change_makes():
    kinds = {_kind(local) for local, _ in _examples()}
    assert {"twice", "missing"} <= kinds


def test_every_example_on_the_page_is_what_the_poller_stores():
    examples = _examples()
    assert len(examples) >= 4
    for local, stored in examples:
        read = local_to_utc(local, ZONE)
        assert read is not None and clock.iso(read) == stored, f"{local}: the page says {stored}"
