"""What every test process shares: AWS service models parsed once.

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
