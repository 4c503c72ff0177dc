"""The SAM transform's output kept on disk, keyed by everything it depends on.

Every runtime start (`make run`, each end-to-end test's subprocess, each test worker) transforms the
same template: about 1.5 s of CPU each, most of it the translator's import. The output depends only on
the template, the parameter values, the translator's version and our own pre-processing
(sam_transform.py), so those are the key; a changed template or translator is simply a new entry.
Only successful transforms are kept: a refused template is refused again, with its message, every time.

The folder is ``CALLBRIDGE_CACHE_DIR`` or ``~/.cache/callbridge`` (``XDG_CACHE_HOME`` respected); a
folder that cannot be written only means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_DIR_VARIABLE = "CALLBRIDGE_CACHE_DIR"
_SAM_TRANSFORM_SOURCE = Path(__file__).with_name("sam_transform.py")

Transform = Callable[[Mapping[str, Any], Mapping[str, str] | None], dict[str, Any]]


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callbridge" / "sam-transform"


def cache_key(raw: Mapping[str, Any], params: Mapping[str, str] | None) -> str | None:
    """None when the template holds something JSON cannot say exactly (then it is not cached)."""
    try:
        document = json.dumps([raw, dict(params or {})], sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(document.encode())
    digest.update(metadata.version("aws-sam-translator").encode())
    digest.update(_SAM_TRANSFORM_SOURCE.read_bytes())
    return digest.hexdigest()


def cached_transform(raw: Mapping[str, Any], params: Mapping[str, str] | None, transform: Transform) -> dict[str, Any]:
    key = cache_key(raw, params)
    path = cache_dir() / f"{key}.json" if key else None
    if path is not None:
        try:
            cached: dict[str, Any] = json.loads(path.read_text())
            return cached
        except (OSError, ValueError):
            pass
    result = transform(raw, params)
    if path is not None:
        _write(path, result)
    return result


def _write(path: Path, result: dict[str, Any]) -> None:
    # Written aside and renamed: runtimes starting side by side never read half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(result, handle)
        os.replace(handle.name, path)
    except OSError:
        pass
