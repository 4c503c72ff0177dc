"""Lazy, cached AWS clients: created on first use (not at import, which is cold start) and reused
across invocations (not per call, which is latency). AWS_ENDPOINT_URL points them at the local
emulation; nothing here knows whether it runs on AWS or on a laptop."""

from __future__ import annotations

import gc
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from callbridge.infra import deadline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient


@cache
def _session() -> Any:
    import boto3

    return boto3.session.Session()


@cache
def _client(service: str, fast: bool) -> Any:
    from botocore.config import Config

    if fast:
        # The contact path answers a ringing phone: fail within its budget and let the caller answer
        # without a contact, instead of waiting through botocore's default 60 s timeouts and retries.
        from callbridge.infra.settings import get_settings

        share = get_settings().contact_budget_ms / 1000 / 3
        config = Config(connect_timeout=share, read_timeout=share, retries={"max_attempts": 1, "mode": "standard"})
    else:
        # A webhook cuts each attempt's read timeout and the retries' back-off to its deadline
        # (deadline.py); a connect is not cut, so it must fit in deadline.MARGIN_SECONDS.
        config = Config(connect_timeout=1, read_timeout=10, retries={"max_attempts": 4, "mode": "standard"})
    return deadline.bound(_create(service, config))


# One client is created at a time: a boto3 session is not safe to create clients from on several
# threads at once (the local runtime serves requests on several), and the GC switch below is global.
_creating = threading.Lock()


def _create(service: str, config: Any) -> Any:
    """Creating a client loads its service model and the endpoint rules: tens of thousands of
    objects that live as long as the container. Python's cyclic GC counts them as new, and a full
    collection that started halfway through walked every object of the process - a fifth of the
    contact function's cold start (bench/benchmark.py). So no collection runs while a client is
    created, and what exists afterwards is frozen: later collections skip it (gc.freeze)."""
    with _creating:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return _session().client(service, config=config)
        finally:
            gc.freeze()
            if enabled:
                gc.enable()


def dynamodb(fast: bool = False) -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb", fast)
    return client


def ssm(fast: bool = False) -> SSMClient:
    client: SSMClient = _client("ssm", fast)
    return client


def sqs() -> SQSClient:
    client: SQSClient = _client("sqs", False)
    return client


def s3() -> S3Client:
    client: S3Client = _client("s3", False)
    return client


def reset_clients() -> None:
    """Drop cached clients (tests point AWS_ENDPOINT_URL at a new emulator), and let the GC have
    what was frozen with them: a process that creates clients again and again must not keep every
    object it ever made."""
    _client.cache_clear()
    _session.cache_clear()
    gc.unfreeze()
