"""A realtime call to Bitrix24 does not wait for its recording (docs/delivery.md, "Recordings and
realtime calls"): Bitrix24 downloads a recording when it is attached, so the call is filed at once
and its recording follows as an update of the same CALL_ID once stored - exactly once, whichever of
the recording worker and the delivery worker sees it stored first. Calls on moto, the strict fake
portal on 127.0.0.1 over HTTP, the queue messages worked by the delivery engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from callbridge.core import accounts, handoff
from callbridge.core.config import AccountConfig
from callbridge.crm.base import Connector
from callbridge.features.admin import apply_account
from callbridge.features.delivery import engine
from callbridge.infra import aws, secrets, settings
from callbridge.infra.http import RetryPolicy
from callbridge.store import calls, deliveries
from callbridge.store.dynamo import to_item
from callbridge.store.updates import Update
from tests.contract.conftest import T0, account_id, now, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.crm_server import serve
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)
CODE = "integration-b24-rec-001"
ANDY = 7
LINK = "https://pbx.example.com/rec/k0001.mp3"


@dataclass
class Portal:
    fake: FakeBitrix24
    account: str

    def call(self, n: int) -> str:
        """A realtime call whose recording is being fetched, handed on as its history would."""
        call = canonical(self.account, n, "in", "answered", 40, started=T0)
        call["recording_url"] = LINK
        aws.dynamodb().put_item(TableName=settings.get_settings().calls_table, Item=to_item(call))
        handoff.call_final(accounts.get_account(self.account), call["call_id"])
        return str(call["call_id"])

    def work(self) -> engine.Report:
        """The delivery queue's messages of this account, as DeliveryFunction gets them."""
        sqs, queue = aws.sqs(), settings.get_settings().delivery_queue_url
        mine: list[tuple[str, str]] = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for m in batch:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            mine += [(m["MessageId"], m["Body"]) for m in batch if json.loads(m["Body"])["account"] == self.account]
        report, failed = engine.deliver_messages(mine)
        assert failed == []
        return report

    def store_recording(self, call_id: str) -> None:
        """What the recording worker does once the file is in S3 (features/recordings/worker.py)."""
        recording = {"key": f"{self.account}/{call_id}/recording.mp3", "size": 2000, "content_type": "audio/mpeg"}
        calls.update_call(self.account, call_id, Update().set(recording_state="stored", recording=recording))
        handoff.recording_settled(self.account, call_id, stored=True)

    def delivery(self, call_id: str) -> dict[str, Any]:
        (item,) = deliveries.of_call(self.account, call_id)
        return item

    def count(self, method: str) -> int:
        return self.fake.methods.count(method)


@pytest.fixture
def portal(account_id: str, now: list[datetime], monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:  # noqa: F811
    monkeypatch.setattr(engine, "HTTP_RETRY", RetryPolicy(attempts=1))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bridge.example.com")
    settings.reset_settings()
    fake = FakeBitrix24(code=CODE, users={ANDY: "101"})
    with serve(fake) as url:
        entry = {"kind": "bitrix24", "webhook_url": f"{url}/rest/1/{CODE}/", "mode": "realtime", "call_cards": False}
        apply_account(AccountConfig.model_validate(trusting_fakes({
            "account": account_id, "timezone": "Europe/Moscow", "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["b24-rec-token-0001"]},
            "crms": [entry], "users": [{"pbx_user": "andy", "bitrix24_user_id": ANDY}],
        })))  # fmt: skip
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        yield Portal(fake, account_id)
    assert fake.errors == [], "the connector broke Bitrix24's protocol"


def test_the_call_is_filed_at_once_and_its_recording_follows_once_stored(portal: Portal) -> None:
    call_id = portal.call(1)
    report = portal.work()  # the recording is still being fetched
    assert report.delivered == 1
    assert len(portal.fake.finished) == 1 and portal.count("telephony.externalCall.attachRecord") == 0
    assert portal.delivery(call_id).get(deliveries.RECORDING_FOLLOWS)
    portal.store_recording(call_id)
    report = portal.work()
    assert (report.recordings, report.delivered) == (1, 0)  # an update, not a second delivery
    assert portal.count("telephony.externalCall.attachRecord") == 1
    assert portal.count("telephony.externalcall.finish") == 1 and len(portal.fake.finished) == 1
    item = portal.delivery(call_id)
    assert item["state"] == deliveries.DELIVERED and item.get("recording_sent_at")
    assert deliveries.RECORDING_FOLLOWS not in item and deliveries.RECORDING_UPDATE not in item
    assert item["crm_answer"] == {"records": 1, "duplicate": False}  # the call's own answer is kept
    # The worker's word again (a redelivered fetch message): nothing more is sent.
    handoff.recording_settled(portal.account, call_id, stored=True)
    assert portal.work().claimed == 0
    assert portal.count("telephony.externalCall.attachRecord") == 1


def test_a_recording_stored_while_its_call_is_being_sent_still_follows_once(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording worker stores the file while the delivery worker sends the call: the worker
    finds no delivery waiting yet, so the delivery worker, reading the call again, sends it."""
    call_id = portal.call(2)
    real = engine.default_connector

    def storing_meanwhile(crm: Any, account: accounts.Account) -> Connector:
        connector = real(crm, account)
        send = connector.send

        def send_and_store(batch: Any) -> Any:
            results = send(batch)
            portal.store_recording(call_id)  # finds the delivery still pending: nothing to reopen
            return results

        monkeypatch.setattr(connector, "send", send_and_store)
        return connector

    monkeypatch.setattr(engine, "default_connector", storing_meanwhile)
    assert portal.work().delivered == 1
    monkeypatch.setattr(engine, "default_connector", real)
    assert portal.work().recordings == 1
    assert portal.count("telephony.externalCall.attachRecord") == 1 and len(portal.fake.finished) == 1
    assert portal.work().claimed == 0


def test_a_recording_given_up_leaves_the_call_as_it_was_filed(portal: Portal) -> None:
    call_id = portal.call(3)
    portal.work()
    calls.update_call(portal.account, call_id, Update().set(recording_state="unavailable"))
    handoff.recording_settled(portal.account, call_id, stored=False)
    assert portal.work().claimed == 0
    item = portal.delivery(call_id)
    assert item["state"] == deliveries.DELIVERED and deliveries.RECORDING_FOLLOWS not in item
    assert portal.count("telephony.externalCall.attachRecord") == 0


def test_the_same_delivery_taken_by_two_workers_at_once_is_sent_once(portal: Portal) -> None:
    """Two messages for one call (a hand-off repeated by the PBX's retry) in two batches that run at
    the same time, as two DeliveryFunction invocations: one sends, the other finds it leased."""
    from concurrent.futures import ThreadPoolExecutor

    call_id = portal.call(4)
    handoff.send_messages(portal.account, call_id, ["bitrix24"])
    sqs, queue = aws.sqs(), settings.get_settings().delivery_queue_url
    messages = [m for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
                if json.loads(m["Body"])["account"] == portal.account]  # fmt: skip
    assert len(messages) == 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda m: engine.deliver_messages([(m["MessageId"], m["Body"])]), messages))
    assert sorted(r.delivered for r, _ in reports) == [0, 1] and all(f == [] for _, f in reports)
    assert portal.count("telephony.externalcall.finish") == 1 and portal.count("telephony.externalcall.register") == 1


def test_a_recording_the_deliveries_were_not_told_of_is_told_on_the_fetchs_retry(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker stored the file but could not tell the waiting delivery (DynamoDB failed): its
    message fails and comes back, finds the recording stored, and tells it then."""
    from callbridge.features.recordings import worker

    call_id = portal.call(5)
    portal.work()
    real = deliveries.of_call

    def failing(*args: Any) -> Any:
        raise RuntimeError("DynamoDB throttled")

    monkeypatch.setattr(deliveries, "of_call", failing)
    with pytest.raises(RuntimeError):
        portal.store_recording(call_id)
    monkeypatch.setattr(deliveries, "of_call", real)
    assert portal.work().claimed == 0  # nothing reopened yet
    assert worker.fetch_recording(portal.account, call_id).status == "already_stored"  # the message's retry
    assert portal.work().recordings == 1
    assert portal.count("telephony.externalCall.attachRecord") == 1
