"""Machinery shared by the contract tests: a fault injector in front of any fake, a look at
everything DynamoDB holds, and the PBX side of a call: its Cloud PBX webhooks through the handler,
and the queued work (call cards) run through the delivery function as Lambda's SQS source would."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from callbridge.infra import aws, settings
from tests.support import form, http_event


@dataclass
class Faults:
    """Stands in front of a fake server's `handle`: while `status` is set, every request gets it
    (with `headers`); `echo` answers 400 with the request echoed back, as some APIs do in their error
    bodies; `hang_s` makes every request wait that long (or until `release`) and then 504; `raw`
    answers every request with that (status, body bytes, headers) as it is: a redirect, a login
    page, truncated JSON. Otherwise the fake answers."""

    fake: Any
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    echo: bool = False
    hang_s: float = 0.0
    raw: tuple[int, bytes, dict[str, str]] | None = None
    requests: int = 0
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests += 1
        if self.hang_s:
            self._released.wait(self.hang_s)
            return 504, {"error": "gateway timeout"}, {}
        if self.echo:
            echoed = {"error": "bad request", "errorMsg": body.decode(errors="replace"), "query": query}
            return 400, echoed, {}
        if self.raw is not None:
            status, body, headers = self.raw
            return status, body, dict(headers)  # a copy: the server pops the content type
        if self.status is not None:
            return self.status, {"success": False, "error": f"HTTP {self.status}"}, dict(self.headers)
        answer: tuple[int, Any, dict[str, str]] = self.fake.handle(method, path, query, headers, body)
        return answer

    def hang(self, seconds: float) -> None:
        self._released.clear()
        self.hang_s = seconds

    def heal(self) -> None:
        """Back to the fake's own answers; hung requests are let go."""
        self.status, self.headers, self.echo, self.hang_s, self.raw = None, {}, False, 0.0, None
        self._released.set()


def dynamodb_dump() -> str:
    """Every item of every table, as one JSON text (a scan: the contract stacks hold a few items)."""
    client = aws.dynamodb()
    dumped: list[Any] = []
    for table in client.list_tables()["TableNames"]:
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = client.scan(**kwargs)
            dumped.append({table: page["Items"]})
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return json.dumps(dumped, ensure_ascii=False)


def leaks(text: str, secrets: list[str]) -> list[str]:
    """The lines of `text` that contain any of `secrets`."""
    return [line for line in text.splitlines() if any(s and s in line for s in secrets)]


def pbx_webhook(account: str, fields: dict[str, Any]) -> None:
    """One Cloud PBX webhook (`history`, `event`) to the account, through its function's handler."""
    import cloudpbx

    answer = cloudpbx.handler(http_event(f"/v1/{account}/cloudpbx", form(**fields), account=account), None)
    assert answer["statusCode"] == 200, answer


def run_queued(account: str) -> int:
    """Play Lambda's SQS event sources for the card and delivery functions, cards first: this
    account's messages only (the stack is shared by the run's tests); returns how many ran."""
    import delivery as delivery_handler
    import live_cards

    current = settings.get_settings()
    handled = _run_queue(account, current.live_card_queue_url, live_cards.handler, "LiveCardQueue")
    return handled + _run_queue(account, current.delivery_queue_url, delivery_handler.handler, "DeliveryQueue")


def _run_queue(account: str, queue: str, handler: Any, name: str) -> int:
    from callbridge_local.drivers import sqs_event

    if not queue:
        return 0
    sqs = aws.sqs()
    handled = 0
    while found := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        mine = [m for m in found if json.loads(m["Body"]).get("account") == account]
        if mine:
            arn = f"arn:aws:sqs:us-east-1:123456789012:{name}"
            assert handler(sqs_event(mine, arn, "us-east-1"), None) == {"batchItemFailures": []}
        for m in mine:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        handled += len(mine)
    return handled
