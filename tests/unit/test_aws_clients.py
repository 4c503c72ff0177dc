"""The cached AWS clients (infra/aws.py): created once, one at a time, with the cyclic GC kept out of
their creation and what they loaded frozen; creating no sockets, so no emulator is needed here."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from callbridge.infra import aws


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_a_client_is_created_once_and_its_objects_are_frozen():
    assert gc.get_freeze_count() == 0
    first = aws.sqs()
    assert aws.sqs() is first
    assert gc.get_freeze_count() > 10_000  # the service model and endpoint rules, among the rest
    assert gc.isenabled()


def test_resetting_the_clients_gives_the_gc_back_what_was_frozen():
    aws.s3()
    assert gc.get_freeze_count() > 0
    aws.reset_clients()
    assert gc.get_freeze_count() == 0


def test_clients_created_on_many_threads_at_once_leave_the_gc_enabled():
    # Each creation switches the GC off and back on: interleaved, a thread that found it off (another
    # thread's doing) would leave it off for good.
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def create(service: str) -> None:
        try:
            start.wait(5)
            {"sqs": aws.sqs, "s3": aws.s3, "ssm": aws.ssm, "dynamodb": aws.dynamodb}[service]()
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=create, args=(s,)) for s in ["sqs", "s3", "ssm", "dynamodb"] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert gc.isenabled()
