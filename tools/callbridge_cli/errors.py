"""Errors and exit codes. Scripts can trust them: 0 success, 1 the command failed (the target is
unreachable, a record is missing, AWS refused), 2 usage (unknown option, bad argument)."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(click.ClickException):
    """A failure the operator can act on; printed as ``Error: <message>`` on stderr, exit code 1."""

    exit_code = EXIT_FAILURE
