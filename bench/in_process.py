"""The in-process stack the delivery and routing benchmarks run against: moto in server mode with the
template's resources, this process's core pointed at it with fresh caches."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def in_process_stack(**env: str) -> Iterator[str]:
    """Yields the moto endpoint. Handlers print metrics (EMF) to stdout: silenced, to keep the report
    readable. The process's environment is restored on exit."""
    from callbridge.core import accounts
    from callbridge.infra import aws, secrets, settings
    from callbridge_local.emulator import point_environ_at
    from callbridge_local.testing import moto_server, provisioned

    saved = dict(os.environ)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), moto_server() as endpoint:
            point_environ_at(endpoint)
            os.environ.update(provisioned(endpoint, ROOT / "template.yaml"))
            os.environ.update(env)
            for reset in (settings.reset_settings, aws.reset_clients, accounts.clear_account_cache):
                reset()
            secrets.reset_secret_cache()
            yield endpoint
    finally:
        os.environ.clear()
        os.environ.update(saved)
