"""Plain-Python ⇄ DynamoDB attribute values, for the low-level client (faster to create than a
boto3 resource, which matters on cold start)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

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
