"""Reading the call history a page at a time: the ByAccount index of the Calls table
(gsi1pk = account, gsi1sk = {started_at}#{call id}, every final call of the account, newest last),
and all items of one call's partition (the call, its timeline, its deliveries) in one query.

A page resumes after the index key of the last call it returned (`IndexKey`), never after
DynamoDB's LastEvaluatedKey alone: with a filter a query reads more calls than it keeps, and a page
cut short of what was read must resume right after its last call, or calls are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items
from callbridge.store.keys import CALL_SK, call_pk

INDEX = "ByAccount"
# Calls DynamoDB evaluates per query of a filtered page (it also stops at 1 MB): a selective filter
# then needs few round trips.
FILTERED_READ = 500
# What one page may read at most, so that a filter matching almost nothing answers in bounded time
# (the page is then short, or empty, with a key to go on from).
MAX_QUERIES = 8
MAX_EVALUATED = 4000


@dataclass(frozen=True, slots=True)
class IndexKey:
    """Where a page stopped: the full key of a call item in the ByAccount index."""

    pk: str
    gsi1sk: str

    def dynamo(self, account: str) -> dict[str, Any]:
        return {
            "pk": {"S": self.pk},
            "sk": {"S": CALL_SK},
            "gsi1pk": {"S": account},
            "gsi1sk": {"S": self.gsi1sk},
        }

    def belongs_to(self, account: str) -> bool:
        return self.pk.startswith(call_pk(account, "")) and len(self.pk) > len(call_pk(account, ""))


@dataclass(frozen=True, slots=True)
class Query:
    """Which calls: `since` <= start < `before` (UTC ISO Z, either may be empty), and attributes
    equal to the given values (direction, outcome, phone, user)."""

    since: str = ""
    before: str = ""
    equal: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    resume: IndexKey | None  # None: nothing more


def _key_of(item: dict[str, Any]) -> IndexKey:
    return IndexKey(pk=item["pk"]["S"], gsi1sk=item["gsi1sk"]["S"])


def _request(account: str, query: Query) -> dict[str, Any]:
    names: dict[str, str] = {"#pk": "gsi1pk"}
    values: dict[str, Any] = {":a": {"S": account}}
    condition = "#pk = :a"
    # gsi1sk is "{start}#{call id}": every key of a call that started at `since` sorts after `since`
    # itself, every one that started at `before` after `before`, so these bounds are [since, before).
    if query.since or query.before:
        names["#sk"] = "gsi1sk"
    if query.since and query.before:
        condition += " AND #sk BETWEEN :since AND :before"
    elif query.since:
        condition += " AND #sk >= :since"
    elif query.before:
        condition += " AND #sk < :before"
    if query.since:
        values[":since"] = {"S": query.since}
    if query.before:
        values[":before"] = {"S": query.before}
    filters = []
    for number, (attribute, value) in enumerate(sorted(query.equal.items())):
        names[f"#f{number}"] = attribute  # `user` is a DynamoDB reserved word: always by name
        values[f":f{number}"] = {"S": value}
        filters.append(f"#f{number} = :f{number}")
    request: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "IndexName": INDEX,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,  # newest first
    }
    if filters:
        request["FilterExpression"] = " AND ".join(filters)
    return request


def page(account: str, query: Query, limit: int, after: IndexKey | None = None) -> Page:
    """Up to `limit` calls of `account` matching `query`, newest first, after `after`."""
    request = _request(account, query)
    filtered = "FilterExpression" in request
    if after is not None:
        request["ExclusiveStartKey"] = after.dynamo(account)
    kept: list[dict[str, Any]] = []
    evaluated = 0
    for _ in range(MAX_QUERIES):
        need = limit - len(kept)
        # One more than needed: then a full page knows whether anything follows (no empty last page).
        request["Limit"] = max(need + 1, FILTERED_READ) if filtered else need + 1
        response = aws.dynamodb().query(**request)
        found = response.get("Items", [])
        evaluated += int(response.get("ScannedCount", len(found)))
        if len(kept) + len(found) > limit:
            kept.extend(found[:need])
            return Page([from_item(i) for i in kept], _key_of(kept[-1]))
        kept.extend(found)
        last = response.get("LastEvaluatedKey")
        if last is None:
            return Page([from_item(i) for i in kept], None)
        request["ExclusiveStartKey"] = last
        if evaluated >= MAX_EVALUATED:
            break
    # The read budget is spent: go on from the last call read, kept or not.
    last = request["ExclusiveStartKey"]
    return Page([from_item(i) for i in kept], IndexKey(pk=last["pk"]["S"], gsi1sk=last["gsi1sk"]["S"]))


def call_items(account: str, call_id: str) -> list[dict[str, Any]]:
    """Every item of one call's partition (CALL, EVT#…, DLV#…), in one query where it fits 1 MB."""
    request: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": call_pk(account, call_id)}},
        "ConsistentRead": True,
    }
    return [from_item(i) for i in query_items(request)]
