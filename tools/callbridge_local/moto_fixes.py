"""Where moto's DynamoDB differs from DynamoDB in a way that breaks a concurrent workload, and the
local fix.

moto 5's TransactWriteItems deep-copies every table the transaction names before it starts, and when
the transaction is cancelled (a condition failed: a repeated webhook, a race the condition exists
for) it puts those copies back. That has two effects DynamoDB never has:

- every write that *another* request made to those tables in the meantime is undone: a delivery
  marked delivered goes back to pending, a call item just stored disappears;
- each transaction costs a copy of the whole table, so a day of calls slows down quadratically and
  the copies pile up in memory (2.7 GB of RSS after 500 webhooks, measured).

The fix keeps moto's own implementation and changes only what it snapshots: during a transaction a
table "copy" is the table itself, and the transaction's own items (and nothing else) are saved
before and put back on failure. Writes through the backend take one lock, so a transaction and its
rollback are atomic with respect to every other write, as in DynamoDB.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

_WRITE_LOCK = threading.RLock()
_state = threading.local()
_applied = False

Saved = tuple[Any, Any, Any, Any]  # table, hash value, range value, the item as it was (or None)


def apply() -> None:
    """Patch the in-process moto DynamoDB backend (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _item_level(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]
    _fast_strings()
    _fast_items()
    _applied = True


def _fast_strings() -> None:
    """moto answers every query by sorting and comparing all items of the table, each comparison
    through DynamoType.cast_value (five type tests per call): with 10,000 calls a page of the call
    history took seconds. String values (every key here) compare as Python strings, exactly as
    cast_value would compare them; every other type keeps moto's own path."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    original_cast = DynamoType.cast_value.fget  # type: ignore[attr-defined]
    original_eq, original_lt = DynamoType.__eq__, DynamoType.__lt__

    def cast_value(self: Any) -> Any:
        return self.value if self.type == "S" else original_cast(self)

    def eq(self: Any, other: Any) -> bool:
        if self.type == "S" and getattr(other, "type", None) == "S":
            return bool(self.value == other.value)
        return bool(original_eq(self, other))

    def lt(self: Any, other: Any) -> bool:
        if self.type == "S" and getattr(other, "type", None) == "S":
            return bool(self.value < other.value)
        return bool(original_lt(self, other))

    DynamoType.cast_value = property(cast_value)  # type: ignore[assignment,method-assign]
    DynamoType.__eq__ = eq  # type: ignore[method-assign]
    DynamoType.__lt__ = lt  # type: ignore[method-assign]


def _table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    if getattr(_state, "in_transaction", False):
        return self  # the transaction saved its own items instead (_item_level)
    cls: Any = type(self)
    clone = cls.__new__(cls)
    memo[id(self)] = clone
    for name, value in self.__dict__.items():
        setattr(clone, name, copy.deepcopy(value, memo))
    return clone


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(*args, **kwargs)

    return locked


def _item_level(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        with _WRITE_LOCK:
            saved = _save(self, transact_items)
            _state.in_transaction = True
            try:
                return method(self, transact_items)
            except Exception:
                _restore(saved)
                raise
            finally:
                _state.in_transaction = False

    return transact_write_items


def _save(backend: Any, transact_items: list[dict[str, Any]]) -> list[Saved]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved: list[Saved] = []
    for entry in transact_items:
        if len(entry) != 1:
            continue  # moto rejects it before writing anything
        op_type, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue  # moto answers ResourceNotFound
        attributes = op.get("Item") if op_type == "Put" else op.get("Key")
        needed = [a for a in (table.hash_key_attr, table.range_key_attr) if a is not None]
        if not isinstance(attributes, dict) or any(a not in attributes for a in needed):
            continue  # moto answers a validation error before writing
        hash_value = DynamoType(attributes[table.hash_key_attr])
        range_value = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
        current = table.get_item(hash_value, range_value)
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    return saved


def _restore(saved: list[Saved]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is not None:
            if item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        elif item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item


def _is_plain(value: Any) -> bool:
    """A DynamoDB attribute value with no binary in it (moto keeps the rest as JSON-ready text)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in ("B", "BS"):
        return False
    if kind == "L":
        return isinstance(inner, list) and all(_is_plain(v) for v in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(_is_plain(v) for v in inner.values())
    return True


def _fast_items() -> None:
    """moto writes each response through botocore's shape model, attribute by attribute: 90% of a
    query's time, about 15 ms per call item of ours. An item (DynamoDB's AttributeMap) is already
    DynamoDB JSON in moto, as the shape walk would write it: it is written as it is, unless it holds
    a binary value (whose encoding the walk owns)."""
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_map

    def serialize_map(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            getattr(shape, "name", None) == "AttributeMap"
            and self.operation_model.service_model.service_name == "dynamodb"
            and isinstance(value, dict)
            and all(_is_plain(v) for v in value.values())
        ):
            self._default_serialize(serialized, value, shape, key)
            return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_map = serialize_map  # type: ignore[method-assign]
