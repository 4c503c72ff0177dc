"""Shared output helpers: tables for people, JSON for scripts (`--json` on list/show commands)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from rich.table import Table

from callbridge_cli.context import out

MASK = "********"


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, show_lines=False, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    out.print(grid)


def _plain(value: Any) -> Any:
    """What json.dumps cannot write itself, as JSON: the store hands back DynamoDB's types, string
    sets (a call's `users_rang`, `flags`) and numbers as Decimal, which must reach a script as a
    list and a number, not as Python's repr. Sets are sorted so that the output is stable."""
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # a set of mixed types: still one stable order
            return sorted(value, key=lambda item: (type(item).__name__, str(item)))
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def dumps(data: Any, **options: Any) -> str:
    """JSON text of anything the CLI shows, with DynamoDB's types as JSON (`_plain`)."""
    return json.dumps(data, ensure_ascii=False, default=_plain, **options)


def as_json(data: Any) -> None:
    # print() rather than rich: JSON must reach scripts byte-exact, without markup or wrapping.
    print(dumps(data, indent=2, sort_keys=True))
