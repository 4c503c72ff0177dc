"""Builds DynamoDB update expressions from plain dicts, so callers say what to set, not how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callbridge.store.dynamo import to_value


@dataclass
class Update:
    """SET / REMOVE / ADD / DELETE clauses with generated placeholders (every name is aliased, which keeps
    DynamoDB's long list of reserved words - `user`, `source`, `duration` - out of the way)."""

    _set: list[str] = field(default_factory=list)
    _add: list[str] = field(default_factory=list)
    _delete: list[str] = field(default_factory=list)
    _remove: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def _name(self, attr: str) -> str:
        alias = f"#n{len(self.names)}"
        self.names[alias] = attr
        return alias

    def _value(self, value: Any) -> str:
        alias = f":v{len(self.values)}"
        self.values[alias] = to_value(value)
        return alias

    def set(self, **attrs: Any) -> Update:
        for attr, value in attrs.items():
            if value is not None:
                self._set.append(f"{self._name(attr)} = {self._value(value)}")
        return self

    def set_if_absent(self, **attrs: Any) -> Update:
        for attr, value in attrs.items():
            if value is not None:
                n = self._name(attr)
                self._set.append(f"{n} = if_not_exists({n}, {self._value(value)})")
        return self

    def add_to_set(self, attr: str, *members: str) -> Update:
        self._add.append(f"{self._name(attr)} {self._value(set(members))}")
        return self

    def remove_from_set(self, attr: str, *members: str) -> Update:
        self._delete.append(f"{self._name(attr)} {self._value(set(members))}")
        return self

    def append_to_list(self, attr: str, *items: Any) -> Update:
        """Append to a list attribute, created when absent (the order of arrival is kept)."""
        n = self._name(attr)
        self._set.append(f"{n} = list_append(if_not_exists({n}, {self._value([])}), {self._value(list(items))})")
        return self

    def remove(self, *attrs: str) -> Update:
        self._remove.extend(self._name(attr) for attr in attrs)
        return self

    def bind(self, names: dict[str, str] | None = None, **values: Any) -> Update:
        """Names (`#x`) and values (`:x`) of a ConditionExpression sent with this update."""
        self.names.update(names or {})
        self.values.update({f":{name}": to_value(value) for name, value in values.items()})
        return self

    def increment(self, attr: str, by: int = 1) -> Update:
        self._add.append(f"{self._name(attr)} {self._value(by)}")
        return self

    def expression(self) -> str:
        parts = []
        if self._set:
            parts.append("SET " + ", ".join(self._set))
        if self._remove:
            parts.append("REMOVE " + ", ".join(self._remove))
        if self._add:
            parts.append("ADD " + ", ".join(self._add))
        if self._delete:
            parts.append("DELETE " + ", ".join(self._delete))
        return " ".join(parts)

    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "UpdateExpression": self.expression(),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        return request
