"""Shared output helpers: tables for people, JSON for scripts (`--json` on list/show commands)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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


def as_json(data: Any) -> None:
    # print() rather than rich: JSON must reach scripts byte-exact, without markup or wrapping.
    print(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str))
