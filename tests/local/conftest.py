"""Fixtures for the local runtime's tests. Every server started here is stopped in a finalizer, and
every in-process runtime leaves os.environ, sys.path and sys.modules as it found them."""

from __future__ import annotations

import io
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from callbridge_local.runtime import LocalRuntime, RuntimeConfig
from callbridge_local.testing import moto_server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@contextmanager
def preserved_process_state() -> Iterator[None]:
    """The runtime points os.environ at its moto and imports handlers: undo both afterwards, so
    that other tests in this pytest process see the world they expect."""
    environ = dict(os.environ)
    path = list(sys.path)
    modules = set(sys.modules)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name.startswith("h_"):
                del sys.modules[name]


@dataclass
class Project:
    """A throwaway SAM project: template.yaml plus handler modules under src/."""

    root: Path
    module: str

    @property
    def template(self) -> Path:
        return self.root / "template.yaml"


def write_project(root: Path, template: str, code: str) -> Project:
    """Writes ``code`` as a uniquely named module and ``template`` with ``{module}`` replaced by it.

    Unique module names, because the runtime imports handlers by name as Lambda does, and all
    tests share one interpreter.
    """
    module = f"h_{uuid.uuid4().hex[:10]}"
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    (root / "template.yaml").write_text(textwrap.dedent(template).replace("{module}", module), encoding="utf-8")
    return Project(root, module)


@contextmanager
def local_runtime(template: Path, **overrides: object) -> Iterator[LocalRuntime]:
    """The whole runtime in this process, on free ports, without account files or timed schedules."""
    config = RuntimeConfig(template_path=template, port=0, aws_port=0, accounts_dir=None, schedules=False)
    for name, value in overrides.items():
        setattr(config, name, value)
    with preserved_process_state():
        runtime = LocalRuntime(config, out=io.StringIO())
        runtime.start()
        try:
            yield runtime
        finally:
            runtime.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def stack_name() -> str:
    """A stack name of its own per test, so tests can share one moto server."""
    return f"t{uuid.uuid4().hex[:8]}"
