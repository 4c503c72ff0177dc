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
    _applied = True


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
