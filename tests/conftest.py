"""What every test process shares: AWS service models parsed once, and the longest files first.

A boto3 client is built from its service model, endpoint rules and partitions, JSON files of
megabytes that botocore parses per session (its loader caches per instance). The tests create
sessions again and again - each test's emulated stack, each reset of the product's cached clients -
and parsing those files again was most of a test's setup. One loader per data path for the whole
process serves every session the same parsed models, as one session's loader already serves all
of its clients (on every thread)."""

from __future__ import annotations

import functools
from typing import Any

import botocore.loaders
import botocore.session
import pytest


class _DistinctPaths(list[str]):
    """A loader's search paths: boto3 adds its data directory to every session's loader, and a
    shared loader would otherwise collect one copy per session."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@functools.cache
def _shared_loader(search_path_string: str | None = None) -> Any:
    loader = _create_loader(search_path_string)
    loader._search_paths = _DistinctPaths(loader.search_paths)  # type: ignore[attr-defined]
    return loader


_create_loader = botocore.loaders.create_loader
botocore.session.create_loader = _shared_loader


# -- the order files run in --------------------------------------------------------------------
# Under pytest-xdist (tools/test.sh: a file per worker, --no-loadscope-reorder) a worker takes the
# next file when it is done with one. A long file started last runs alone while the other worker
# idles - the 10,000-request fuzz run and the backfills of 10,000 calls are one test each, which
# xdist's own order (most tests first) put at the very end. So the longest files go first: a file
# says how long it may take with its timeout mark, and the end-to-end files start the runtime.
E2E_WEIGHT = 150.0


def _weight(item: pytest.Item) -> float:
    mark = item.get_closest_marker("timeout")
    declared = float(mark.args[0]) if mark is not None and mark.args else 0.0
    return max(declared, E2E_WEIGHT if item.get_closest_marker("e2e") else 0.0)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with the longest allowance first; within a file, the order as collected."""
    per_file: dict[str, float] = {}
    for item in items:
        path = str(item.path)
        per_file[path] = max(per_file.get(path, 0.0), _weight(item))
    items.sort(key=lambda item: -per_file[str(item.path)])
