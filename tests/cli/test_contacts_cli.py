"""`callbridge contacts import|export` against the local runtime."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import httpx

from tests.support import DEMO_TOKEN, form


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["name", "phones", "responsible"], *rows])
    return path


def test_import_understands_any_phone_format_and_reports_bad_rows(callbridge, bridge, tmp_path: Path):
    path = write_csv(
        tmp_path / "contacts.csv",
        [
            ["Ivan Import", "8 (495) 765-43-21; +7 916 765-43-21", "andy"],
            ["Olga Import", "9167654322", ""],
            ["No Phone", "", "andy"],
            ["", "+79167654323", ""],
            ["Half Good", "garbage, +7 (916) 765-43-24", "daria"],
        ],
    )
    result = callbridge("contacts", "import", str(path), "--account", "demo")
    assert result.exit_code == 0, result.output
    assert "5 rows read: 3 contacts with 4 phones stored in account demo, 3 problems" in result.output
    assert "no phone" in result.output and "no name" in result.output and "'garbage'" in result.output

    # The PBX now learns the name while the phone rings.
    response = httpx.post(
        bridge.url("/v1/demo/cloudpbx"),
        content=form(cmd="contact", phone="74957654321", callid="CLI-CONTACT-1", crm_token=DEMO_TOKEN),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["contact_name"] == "Ivan Import"
    served = bridge.wait_for_output('"Served":"directory"')
    assert any('"ContactLatency"' in line for line in served)

    strict = callbridge("contacts", "import", str(path), "-a", "demo", "--strict")
    assert strict.exit_code == 1


def test_export_reads_back_with_import(callbridge, tmp_path: Path):
    write_csv(tmp_path / "in.csv", [["Round Trip", "+7 916 111-22-33;+7 916 111-22-34", "daria"]])
    assert callbridge("contacts", "import", str(tmp_path / "in.csv"), "-a", "demo").exit_code == 0

    result = callbridge("contacts", "export", "-a", "demo")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {"name": "Round Trip", "phones": "+79161112233;+79161112234", "responsible": "daria"} in rows
    assert any(r["name"] == "Semen Semenov" for r in rows)  # the demo file's contacts too

    out = tmp_path / "out.csv"
    assert callbridge("contacts", "export", "-a", "demo", "-o", str(out)).exit_code == 0
    again = callbridge("contacts", "import", str(out), "-a", "demo")
    assert again.exit_code == 0 and ", 0 problems" in again.output


def test_import_of_ten_thousand_rows_is_quick_with_progress_and_summary(callbridge, tmp_path: Path):
    rows = [
        [f"Bulk {n}", f"+7 (926) {n // 10000:03d}-{n % 10000 // 100:02d}-{n % 100:02d}", "andy"] for n in range(10_000)
    ]
    rows.append(["Broken", "12", ""])
    path = write_csv(tmp_path / "bulk.csv", rows)
    started = time.monotonic()
    result = callbridge("contacts", "import", str(path), "-a", "demo")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "10001 rows read: 10000 contacts with 10000 phones stored in account demo, 1 problems" in result.output
    assert "importing contacts" in result.output  # the progress bar (stderr; CliRunner mixes it in)
    assert elapsed < 30, elapsed
