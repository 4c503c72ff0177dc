"""Missed calls without I/O: each PBX's reason mapping, the callback settings, the hours rule, and
whom a missed call is filed under in each CRM (one record, the owner chain)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from callbridge.core.config import AccountConfig, CallbackSettings, UserMapping
from callbridge.core.model import Call
from callbridge.core.terms import MissedReason
from callbridge.crm.base import DeliveryContext
from callbridge.crm.minicrm.connector import MiniCrmConnector
from callbridge.crm.minicrm.settings import MiniCrmSettings
from callbridge.crm.retailcrm.connector import RetailCrmConnector
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.features.callbacks import in_hours, marker
from callbridge.pbx.ccrm.protocol import reason_of
from callbridge.pbx.cloudpbx.ingest import history_reason
from callbridge.pbx.telediscount.protocol import final_call as telediscount_call

T = datetime(2024, 5, 1, 7, 0, tzinfo=UTC)  # 10:00 in Moscow, a Wednesday


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("Success", None),
        ("missed", MissedReason.NO_ANSWER),
        ("Cancel", MissedReason.NO_ANSWER),
        ("Busy", MissedReason.BUSY),
        ("NotAllowed", MissedReason.REJECTED),
        ("NotAvailable", MissedReason.UNAVAILABLE),
        ("NotFound", MissedReason.UNAVAILABLE),
        ("SomethingNew", MissedReason.UNKNOWN),
    ],
)
def test_cloudpbx_history_status_gives_the_reason(status: str, reason: MissedReason | None) -> None:
    assert history_reason(status) == reason


@pytest.mark.parametrize(
    ("status", "queue", "reason"),
    [
        ("answered", "queue", None),
        ("noAnswer", "noQueue", MissedReason.NO_ANSWER),
        ("noAnswer", "queue", MissedReason.QUEUE_ABANDONED),
        ("busy", "noQueue", MissedReason.BUSY),
        ("", None, MissedReason.UNKNOWN),
    ],
)
def test_ccrm_status_and_queue_give_the_reason(status: str, queue: str | None, reason: MissedReason | None) -> None:
    assert reason_of(status, queue) == reason


@pytest.mark.parametrize(("talk", "reason"), [("0", MissedReason.NO_ANSWER), ("12", None)])
def test_telediscount_connection_time_zero_is_no_answer(talk: str, reason: MissedReason | None) -> None:
    fields = {"num_a": "79039998877", "num_b": "SIP/0000000672", "num_m": "79037778899", "api_call_id": "c1",
              "setup_time": "1714546800", "connection_time": talk, "waiting_time": "5"}  # fmt: skip
    call = telediscount_call(fields, region="RU", users=[], received=T)
    assert call is not None and call.missed_reason == reason
    assert call.attributes("acc", "now").get("missed_reason") == (reason.value if reason else None)


def test_callback_settings_read_yaml_switches_and_check_hours() -> None:
    assert CallbackSettings.model_validate({"mode": True}).mode == "all"
    assert CallbackSettings.model_validate({"mode": False}).enabled is False
    with pytest.raises(ValidationError):
        CallbackSettings(hours="9-18")
    with pytest.raises(ValidationError):
        CallbackSettings(window_minutes=0)


@pytest.mark.parametrize(
    ("hours", "days", "inside"),
    [
        (None, None, True),
        ("09:00-18:00", None, True),
        ("10:01-18:00", None, False),
        ("22:00-10:30", None, True),  # overnight
        ("00:00-24:00", ["mon"], False),
    ],
)
def test_hours_are_the_accounts_local_time(hours: str | None, days: list[str] | None, inside: bool) -> None:
    options = CallbackSettings.model_validate({"mode": "all", "hours": hours, **({"days": days} if days else {})})
    assert in_hours(options, T, "Europe/Moscow") is inside


def test_the_task_marker_is_stable_and_per_task() -> None:
    assert marker("a", "retailcrm", "T#1#c1") == marker("a", "retailcrm", "T#1#c1")
    assert marker("a", "retailcrm", "T#1#c1") != marker("a", "retailcrm", "T#1#c2")


def test_missed_call_owner_must_be_a_mapped_user() -> None:
    base: dict[str, Any] = {"account": "x", "phone_region": "RU", "pbx": {"kind": "cloudpbx", "crm_tokens": ["t" * 16]}}
    with pytest.raises(ValidationError, match=r"missed_calls\.owner"):
        AccountConfig.model_validate({**base, "missed_calls": {"owner": "nobody"}})
    config = AccountConfig.model_validate(
        {**base, "users": [{"pbx_user": "senior"}], "missed_calls": {"owner": "senior"}}
    )
    assert config.missed_calls.owner == "senior"


USERS = [
    UserMapping.model_validate({"pbx_user": "andy", "extension": "101", "retailcrm_user_id": 1}),
    UserMapping.model_validate({"pbx_user": "daria", "extension": "102", "retailcrm_user_id": 2}),
    UserMapping.model_validate({"pbx_user": "senior", "extension": "110", "retailcrm_user_id": 10}),
]


def context(owner: str | None, responsible: dict[str, str]) -> DeliveryContext:
    return DeliveryContext("x", "Europe/Moscow", USERS, lambda c: "", missed_owner=owner, responsible=responsible.get)


def group_ring() -> Call:
    return Call(account="x", call_id="c1", source="cloudpbx", direction="in", outcome="missed", final=True,
                phone="+79160000001", started_at=T, users_rang={"andy", "daria", "ghost"})  # fmt: skip


@pytest.mark.parametrize(
    ("owner", "responsible", "extension", "user_id"),
    [
        ("senior", {"+79160000001": "daria"}, "102", 2),  # the caller's responsible manager first
        ("senior", {}, "110", 10),  # then the account's owner of missed calls
        (None, {}, "900", 99),  # then the CRM's default user
    ],
)
def test_a_group_ring_is_one_record_for_its_owner(
    owner: str | None, responsible: dict[str, str], extension: str, user_id: int
) -> None:
    ctx = context(owner, responsible)
    mini = MiniCrmConnector(MiniCrmSettings(api_key="k" * 8, default_user_extension="900"), ctx, "k" * 8)
    retail = RetailCrmConnector(
        RetailCrmSettings(base_url="https://x.retailcrm.ru", api_key="k" * 8, client_id="c" * 16, default_user_id=99),
        ctx,
        "k" * 8,
    )
    try:
        records = mini.records(group_ring(), False).records
        assert [r.group for r in records] == [extension]
        (upload,) = retail.records(group_ring(), False).records
        assert upload.payload["userId"] == user_id
    finally:
        mini.close()
        retail.close()


def test_minicrm_callbacks_need_its_general_api_and_a_card() -> None:
    with pytest.raises(ValidationError, match="system_id and general_api_key"):
        MiniCrmSettings.model_validate({"api_key": "k" * 8, "callbacks": {"mode": "all"}})
    with pytest.raises(ValidationError):  # an unknown number has no card to hang a ToDo on
        MiniCrmSettings.model_validate(
            {"api_key": "k" * 8, "system_id": 1, "general_api_key": "g" * 8, "callbacks": {"mode": "unknown_numbers"}}
        )
    ready = MiniCrmSettings.model_validate(
        {"api_key": "k" * 8, "system_id": 1, "general_api_key": "g" * 8, "callbacks": {"mode": True}}
    )
    assert ready.callback_tasks and not MiniCrmSettings(api_key="k" * 8).callback_tasks
