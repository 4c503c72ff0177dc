"""The ccrm.pl poller in-process against moto and a fake ccrm.pl on 127.0.0.1 (docs/protocols/ccrm.md): the
vendor example call and its (broken-JSON) notes, SMS/FAX by configuration, and a request limit that pauses
the poll until the next run, which resumes at the refused page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.infra import aws
from callbridge.pbx.ccrm import importer
from callbridge.pbx.ccrm.client import CcrmApi, CcrmError
from callbridge.pbx.ccrm.importer import POLL_CURSOR, load_cursor, poll_account
from callbridge.store import calls
from callbridge.store.dynamo import from_item
from tests.fakes.base import serve
from tests.fakes.ccrm import SEED_NOTES_BODY, SEED_RECORD, FakeCcrm, record
from tests.support import trusting_fakes

KEY = "integration-ccrm-key-0001"
# The vendor documentation's call (2022-12-29 11:24:57 in Poland) falls in the first poll's window from here.
NOW = datetime(2022, 12, 29, 10, 30, tzinfo=UTC)


@pytest.fixture
def ccrm(cloud: dict[str, str]) -> Iterator[FakeCcrm]:
    fake = FakeCcrm(api_key=KEY)
    with serve(fake) as base:
        config = AccountConfig.model_validate(
            trusting_fakes(
                {
                    "account": "pl",
                    "phone_region": "PL",
                    "pbx": {"kind": "ccrm", "base_url": base, "api_key": KEY, "import_sms": True},
                    "users": [{"pbx_user": "jan", "ccrm_internal": "107"}],
                }
            )
        )
        apply_account(config)
        yield fake


def message_item(uuid: str) -> dict[str, Any] | None:
    from callbridge.infra.settings import get_settings

    item = (
        aws.dynamodb()
        .get_item(TableName=get_settings().calls_table, Key={"pk": {"S": f"MSG#pl#{uuid}"}, "sk": {"S": "MSG"}})
        .get("Item")
    )
    return from_item(item) if item else None


def test_the_seed_call_is_stored_in_utc_with_its_notes(ccrm: FakeCcrm) -> None:
    sms = record("5a5a5a5a-0000-4000-8000-000000000001", "2022-12-29 11:20:00", service="SMS", smsData="Hello")
    fax = record("fa0fa0fa-0000-4000-8000-000000000001", "2022-12-29 11:21:00", service="FAX")
    internal = record("1a1a1a1a-0000-4000-8000-000000000001", "2022-12-29 11:22:00", callDirection="internal")
    ccrm.add(SEED_RECORD, sms, fax, internal)
    ccrm.notes[SEED_RECORD["uuid"]] = SEED_NOTES_BODY

    result = poll_account("pl", now=NOW)
    assert (result.status, result.stored, result.messages, result.skipped) == ("complete", 1, 1, 2)
    call = calls.get_call("pl", SEED_RECORD["uuid"])
    assert call is not None
    assert call["started_at"] == "2022-12-29T10:24:57Z"
    # The note keeps its author and when it was written (the notes answer's `created`, in UTC).
    assert call["notes"] == [
        {"text": "Notatka do tego połączenia", "author": "Jan Kowalski",
         "author_id": "a26b956b-ce46-48f4-a1bd-b657136d4148", "created_at": "2022-12-29T12:13:35Z"}
    ]  # fmt: skip
    assert (call["user"], call["outcome"], call["phone"], call["source"]) == ("jan", "answered", "+48333333333", "ccrm")
    assert calls.get_call("pl", sms["uuid"]) is None and calls.get_call("pl", fax["uuid"]) is None
    assert (message_item(sms["uuid"]) or {}).get("text") == "Hello"
    assert message_item(fax["uuid"]) is None  # import_fax is off
    assert calls.get_call("pl", internal["uuid"]) is None

    # The requests followed the spec: dates in Warsaw time, %20 for the space, Bearer key.
    history = [q for p, q in ccrm.requests if p == "/publicApi/callHistory"]
    assert history[0] == {"dateFrom": "2022-12-29 10:30:00", "dateTo": "2022-12-29 11:30:00", "page": "1"}
    assert ccrm.errors == []
    assert load_cursor("pl", POLL_CURSOR) == {
        "polled_to": "2022-12-29T10:30:00Z",
        "updated_at": load_cursor("pl", POLL_CURSOR)["updated_at"],
    }

    # The next poll re-reads the overlap: nothing is stored twice, notes are not fetched again.
    notes_before = sum(1 for p, _ in ccrm.requests if p == "/publicApi/notes")
    again = poll_account("pl", now=datetime(2022, 12, 29, 10, 35, tzinfo=UTC))
    assert again.stored == 0
    assert sum(1 for p, _ in ccrm.requests if p == "/publicApi/notes") == notes_before


def test_a_request_limit_pauses_the_poll_and_the_next_run_resumes_at_that_page(
    ccrm: FakeCcrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCRM_RATE_LIMIT_RETRIES", "0")
    from callbridge.infra.settings import reset_settings

    reset_settings()
    monkeypatch.setattr(importer, "PAGE_SIZE", 10)
    ccrm.page_size = 10
    ccrm.add(*(record(f"30000000-0000-4000-8000-{i:012d}", f"2022-12-29 11:{i:02d}:00") for i in range(25)))
    ccrm.fail_once = {2}

    paused = poll_account("pl", now=NOW)
    assert (paused.status, paused.stored) == ("rate_limited", 10)
    assert load_cursor("pl", POLL_CURSOR)["page"] == 2
    resumed = poll_account("pl", now=datetime(2022, 12, 29, 10, 40, tzinfo=UTC))
    assert (resumed.status, resumed.stored) == ("complete", 15)
    assert ccrm.pages_served() == [1, 2, 2, 3]  # the window of the first run, finished by the second
    assert [q["dateTo"] for p, q in ccrm.requests if p == "/publicApi/callHistory"] == ["2022-12-29 11:30:00"] * 4
    accounts.clear_account_cache()


def test_a_wrong_key_is_a_clear_error_and_moves_no_cursor(ccrm: FakeCcrm) -> None:
    trusted = importer.api_for(accounts.get_account("pl"))
    api = CcrmApi(base_url=trusted.base_url, api_key="wrong-key", trusted_hosts=trusted.trusted_hosts)
    with pytest.raises(CcrmError) as error:
        poll_account("pl", api=api, now=NOW)
    assert error.value.status == 401 and "wrong-key" not in str(error.value)
    assert "page" in load_cursor("pl", POLL_CURSOR)  # the window is kept, at its first page
