"""moto_fixes: TransactWriteItems in the local emulator behaves as DynamoDB does under concurrency —
a cancelled transaction undoes its own writes and nothing else, and its cost does not grow with the
table."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callbridge_local.provision import AwsTarget


@pytest.fixture
def table(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = AwsTarget(moto_endpoint).client("dynamodb")
    name = f"fix-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield client, name
    finally:
        client.delete_table(TableName=name)


def key(pk: str, sk: str = "A") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def cancelled(client: Any, name: str, n: int) -> None:
    """A transaction that writes one item, then fails its condition on another: cancelled."""
    put = {"Put": {"TableName": name, "Item": {**key(f"tx-{n}"), "v": {"N": "1"}}}}
    update = {
        "Update": {
            "TableName": name,
            "Key": key("counter"),
            "UpdateExpression": "SET v = :v",
            "ConditionExpression": "attribute_not_exists(pk)",
            "ExpressionAttributeValues": {":v": {"N": str(n)}},
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[put, update])


def test_a_cancelled_transaction_undoes_its_own_writes(table: tuple[Any, str]) -> None:
    client, name = table
    client.put_item(TableName=name, Item={**key("counter"), "v": {"N": "0"}})
    client.put_item(TableName=name, Item={**key("tx-1"), "v": {"N": "7"}})
    cancelled(client, name, 1)  # its Put over tx-1 is undone: the old item is back
    cancelled(client, name, 2)  # its Put of a new item is undone: no tx-2
    assert client.get_item(TableName=name, Key=key("tx-1"))["Item"]["v"] == {"N": "7"}
    assert "Item" not in client.get_item(TableName=name, Key=key("tx-2"))
    assert client.get_item(TableName=name, Key=key("counter"))["Item"]["v"] == {"N": "0"}


def test_writes_made_during_cancelled_transactions_are_kept(table: tuple[Any, str]) -> None:
    """moto's own rollback put back a copy of the whole table, undoing other requests' writes."""
    client, name = table
    client.put_item(TableName=name, Item={**key("counter"), "v": {"N": "0"}})
    for n in range(300):  # a table big enough that moto's copy took a while
        client.put_item(TableName=name, Item={**key(f"base-{n}"), "v": {"N": "1"}})
    stop = threading.Event()

    def cancel_repeatedly() -> None:
        n = 0
        while not stop.is_set():
            cancelled(client, name, n)
            n += 1

    canceller = threading.Thread(target=cancel_repeatedly, daemon=True)
    canceller.start()
    try:
        for n in range(200):
            client.put_item(TableName=name, Item={**key(f"kept-{n}"), "v": {"N": "1"}})
    finally:
        stop.set()
        canceller.join(30)
    kept = [client.get_item(TableName=name, Key=key(f"kept-{n}")).get("Item") for n in range(200)]
    assert all(kept), f"{sum(1 for k in kept if not k)} of 200 writes lost"


def test_items_answer_as_written_with_every_type_and_strings_sort_as_dynamodb_sorts(table: tuple[Any, str]) -> None:
    """The fast paths (strings compared natively, items written as the JSON they are) change no
    answer: every attribute type comes back as written, binary ones too (which keep moto's own
    encoding), and a query sorts by the string range key, numbers compare as numbers."""
    client, name = table
    item = {
        **key("types", "B#2"),
        "s": {"S": "é ü 💡"},
        "n": {"N": "10.50"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["b", "a"]},
        "ns": {"NS": ["2", "10"]},
        "bs": {"BS": [b"\x01"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"BOOL": True}, {"NULL": True}, {"B": b"\x02"}]}}},
        "l": {"L": [{"M": {"k": {"S": "v"}}}]},
    }
    client.put_item(TableName=name, Item=item)
    for sk in ("B#10", "A", "b", "B#1"):
        client.put_item(TableName=name, Item={**key("types", sk), "n": {"N": "9"}})
    got = client.get_item(TableName=name, Key=key("types", "B#2"), ConsistentRead=True)["Item"]
    queried = client.query(
        TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "types"}}
    )["Items"]
    assert [i["sk"]["S"] for i in queried] == ["A", "B#1", "B#10", "B#2", "b"]  # byte order, as DynamoDB
    [mine] = [i for i in queried if i["sk"]["S"] == "B#2"]
    for answer in (got, mine):
        assert answer["b"] == {"B": b"\x00\xffbytes"} and answer["bs"] == {"BS": [b"\x01"]}
        assert answer["m"]["M"]["inner"]["L"][4] == {"B": b"\x02"}
        assert {k: v for k, v in answer.items() if k not in ("b", "bs", "m", "ss", "ns")} == {
            k: v for k, v in item.items() if k not in ("b", "bs", "m", "ss", "ns")
        }
        assert sorted(answer["ss"]["SS"]) == ["a", "b"] and sorted(answer["ns"]["NS"], key=int) == ["2", "10"]
    bigger = client.query(
        TableName=name,
        KeyConditionExpression="pk = :p",
        FilterExpression="n > :nine",
        ExpressionAttributeValues={":p": {"S": "types"}, ":nine": {"N": "9"}},
    )["Items"]
    assert [i["sk"]["S"] for i in bigger] == ["B#2"]  # 10.50 > 9 as numbers ("10.50" < "9" as text)
