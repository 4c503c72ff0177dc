"""The store's paging and conditional-write helpers (store/dynamo.py) against DynamoDB (moto over
HTTP): every page is read and no page more than asked for, `at_most` lowers a page's Limit to what
is still wanted, and a refused condition is an answer (False, None) while any other error is raised.
The requests are watched on the client's own event hooks, as botocore sends them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import (
    delete_if,
    from_item,
    put_if,
    query_items,
    scan_items,
    to_item,
    update_if,
    updated_item_if,
)

PK = "HELPERS#paging"


@pytest.fixture
def sent(cloud: dict[str, str]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """(operation, parameters) of every DynamoDB request made while the test runs."""
    requests: list[tuple[str, dict[str, Any]]] = []
    events = aws.dynamodb().meta.events

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        requests.append((model.name, dict(params)))

    events.register("provide-client-params.dynamodb.*", record)
    try:
        yield requests
    finally:
        events.unregister("provide-client-params.dynamodb.*", record)


def _fill(count: int) -> None:
    for n in range(count):
        aws.dynamodb().put_item(
            TableName=get_settings().calls_table, Item=to_item({"pk": PK, "sk": f"S{n:02d}", "n": n})
        )


def _partition(**extra: Any) -> dict[str, Any]:
    return {
        "TableName": get_settings().calls_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": PK}},
        **extra,
    }


def test_every_page_is_read_and_no_more_than_wanted(sent: list[tuple[str, dict[str, Any]]]) -> None:
    _fill(7)
    sent.clear()
    request = _partition(Limit=2, ConsistentRead=True)

    assert [from_item(i)["n"] for i in query_items(request)] == list(range(7))
    queries = [params for name, params in sent if name == "Query"]
    assert len(queries) == 4  # 2 + 2 + 2 + 1
    assert all(q["ConsistentRead"] and q["Limit"] == 2 for q in queries)
    assert "ExclusiveStartKey" not in queries[0] and queries[3]["ExclusiveStartKey"]["sk"] == {"S": "S05"}
    assert "ExclusiveStartKey" not in request  # the caller's request is not changed

    sent.clear()
    assert [from_item(i)["n"] for i in query_items(request, at_most=3)] == [0, 1, 2]
    assert [q["Limit"] for name, q in sent if name == "Query"] == [2, 1]  # the second page asks for one

    sent.clear()
    assert [from_item(i)["n"] for i in query_items(_partition(), at_most=2)] == [0, 1]
    assert [("Limit" in q) for name, q in sent if name == "Query"] == [False]  # no Limit where none was asked
    assert list(query_items(request, at_most=0)) == []

    sent.clear()
    lazy = query_items(request)
    assert from_item(next(lazy))["n"] == 0
    assert len(sent) == 1  # nothing read beyond the page in use

    sent.clear()
    scan = {
        "TableName": get_settings().calls_table,
        "FilterExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": PK}},
        "Limit": 3,
    }
    assert sorted(from_item(i)["n"] for i in scan_items(scan)) == list(range(7))
    scans = [q for name, q in sent if name == "Scan"]
    assert len(scans) > 1 and all("ExclusiveStartKey" in q for q in scans[1:])


def test_a_refused_condition_is_an_answer_any_other_error_is_raised(cloud: dict[str, str]) -> None:
    table = get_settings().calls_table
    key = {"pk": {"S": "HELPERS#writes"}, "sk": {"S": "ONE"}}
    absent = "attribute_not_exists(pk)"

    assert put_if(TableName=table, Item={**key, **to_item({"v": 1})}, ConditionExpression=absent)
    assert not put_if(TableName=table, Item={**key, **to_item({"v": 2})}, ConditionExpression=absent)

    bump: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET v = v + :one",
        "ConditionExpression": "v = :want",
    }
    assert not update_if(**bump, ExpressionAttributeValues={":one": {"N": "1"}, ":want": {"N": "5"}})
    assert update_if(**bump, ExpressionAttributeValues={":one": {"N": "1"}, ":want": {"N": "1"}})
    assert updated_item_if(**bump, ExpressionAttributeValues={":one": {"N": "1"}, ":want": {"N": "1"}}) is None
    after = updated_item_if(**bump, ExpressionAttributeValues={":one": {"N": "1"}, ":want": {"N": "2"}})
    assert after == {"pk": "HELPERS#writes", "sk": "ONE", "v": 3}  # the whole item, plain values

    owned: dict[str, Any] = {"TableName": table, "Key": key, "ConditionExpression": "v = :v"}
    assert not delete_if(**owned, ExpressionAttributeValues={":v": {"N": "9"}})
    assert aws.dynamodb().get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    assert delete_if(**owned, ExpressionAttributeValues={":v": {"N": "3"}})
    assert "Item" not in aws.dynamodb().get_item(TableName=table, Key=key, ConsistentRead=True)

    with pytest.raises(ClientError) as raised:
        update_if(
            TableName="no-such-table",
            Key=key,
            UpdateExpression="SET v = :v",
            ConditionExpression=absent,
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
