"""Plain-Python ⇄ DynamoDB attribute values, for the low-level client (faster to create than a
boto3 resource, which matters on cold start), and the two ways every store module talks to it:
reading all pages of a query or scan, and writing under a condition that may not hold."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from callbridge.infra import aws

_ser = TypeSerializer()
_de = TypeDeserializer()


def _prepare(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    if isinstance(value, set):
        return {_restore(v) for v in value}
    return value


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """Serialize a dict, dropping None values (DynamoDB has no use for them)."""
    return {k: _ser.serialize(_prepare(v)) for k, v in data.items() if v is not None}


def to_value(value: Any) -> Any:
    return _ser.serialize(_prepare(value))


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _restore(_de.deserialize(v)) for k, v in item.items()}


# -- reading every page, writing under a condition --------------------------------------------------
# Every store module reads whole partitions page by page and writes under conditions whose failure is
# an answer (a retry, a race lost), not an error: both are here once, so that a module says what it
# reads or requires and never again how DynamoDB pages or refuses.

CONDITION_FAILED = "ConditionalCheckFailedException"


def query_items(request: Mapping[str, Any], *, at_most: int | None = None) -> Iterator[dict[str, Any]]:
    """Every item (typed, as DynamoDB sends it) a Query answers, page after page by LastEvaluatedKey.
    Lazy: a page is asked for only when the items before it are used up, so a caller that stops
    early reads no further. `at_most`: stop after that many items; a request's `Limit` (what one
    page asks for at most) is then lowered to what is still wanted."""
    return _every_item(aws.dynamodb().query, request, at_most)


def scan_items(request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item a Scan answers, as query_items does for a Query."""
    return _every_item(aws.dynamodb().scan, request, None)


def _every_item(
    read: Callable[..., Mapping[str, Any]], request: Mapping[str, Any], at_most: int | None
) -> Iterator[dict[str, Any]]:
    following = dict(request)
    left = at_most
    while left is None or left > 0:
        if left is not None and "Limit" in request:
            following["Limit"] = min(int(request["Limit"]), left)
        response = read(**following)
        for item in response.get("Items", []):
            yield item
            if left is not None:
                left -= 1
                if left <= 0:
                    return
        if "LastEvaluatedKey" not in response:
            return
        following["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def put_if(**request: Any) -> bool:
    """PutItem; False when its ConditionExpression did not hold (nothing written then)."""
    return _unless_refused(aws.dynamodb().put_item, request) is not None


def update_if(**request: Any) -> bool:
    """UpdateItem; False when its ConditionExpression did not hold (nothing changed then)."""
    return _unless_refused(aws.dynamodb().update_item, request) is not None


def updated_item_if(**request: Any) -> dict[str, Any] | None:
    """UpdateItem returning the whole item as the update left it (plain values); None when its
    ConditionExpression did not hold (nothing changed then)."""
    response = _unless_refused(aws.dynamodb().update_item, {**request, "ReturnValues": "ALL_NEW"})
    return None if response is None else from_item(response["Attributes"])


def delete_if(**request: Any) -> bool:
    """DeleteItem; False when its ConditionExpression did not hold (nothing deleted then)."""
    return _unless_refused(aws.dynamodb().delete_item, request) is not None


def _unless_refused(write: Callable[..., Mapping[str, Any]], request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The write's response, or None when DynamoDB refused it for its condition; any other error is
    raised as botocore raised it."""
    try:
        return write(**request)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == CONDITION_FAILED:
            return None
        raise
