"""The local stand-in for AWS: a moto server on 127.0.0.1, and the environment that points the AWS
SDK at it."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping
from typing import Any

from callbridge_local import DEFAULT_REGION

LOCALHOST = "127.0.0.1"
# moto accepts any credentials; fixed fake ones keep real ones from ever being picked up.
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"

# Variables that would make the SDK use a real account or bypass AWS_ENDPOINT_URL.
_REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


class EmulatorError(RuntimeError):
    """The moto server could not be started."""


def aws_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The environment under which boto3 clients talk to the emulator instead of AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def point_environ_at(
    endpoint_url: str, region: str = DEFAULT_REGION, environ: MutableMapping[str, str] | None = None
) -> None:
    """Point this process's AWS SDK at the emulator, dropping anything that could reach real AWS."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    for name in [*_REAL_AWS_VARIABLES, *(k for k in target if k.startswith("AWS_ENDPOINT_URL_"))]:
        target.pop(name, None)
    target.update(aws_env(endpoint_url, region))


def _check_port_free(host: str, port: int) -> None:
    # ThreadedMotoServer.start() waits forever when its server cannot bind; fail clearly instead.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise EmulatorError(f"cannot use {host}:{port} for the AWS emulator: {exc.strerror}") from None


class MotoServer:
    """moto in server mode in a background thread of this process."""

    def __init__(self, host: str = LOCALHOST, port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise EmulatorError("the AWS emulator is not running")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> str:
        # werkzeug logs every request at INFO on its own handler; the queue pollers alone would
        # flood the console.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        if self.port:
            _check_port_free(self.host, self.port)
        from moto.server import ThreadedMotoServer

        from callbridge_local import faults, moto_fixes

        moto_fixes.apply()
        faults.apply()
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        return self.endpoint_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
