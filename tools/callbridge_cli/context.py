"""What every command needs: the target (connected on first use) and the consoles."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console

from callbridge_cli.errors import CliError
from callbridge_cli.target import Target, TargetOptions, connect


@dataclass
class State:
    options: TargetOptions
    _target: Target | None = field(default=None, repr=False)

    def target(self) -> Target:
        if self._target is None:
            self._target = connect(self.options)
        return self._target


def state(ctx: click.Context) -> State:
    found = ctx.find_object(State)
    if found is None:  # a group module invoked without the root command: a programming error
        raise RuntimeError("callbridge command invoked outside the callbridge app")
    return found


def target(ctx: click.Context) -> Target:
    """Connect (once) to the stack or local runtime named by the global options."""
    return state(ctx).target()


# Results go to stdout, progress and notes to stderr. Piped output is wide rather than folded at
# rich's default 80 columns, so that grep finds whole ids (scripts should still prefer --json).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


@contextmanager
def product_logs_on_stderr() -> Iterator[None]:
    """The product's own log lines (JSON, as in Lambda) go to stderr while a command runs it: stdout
    is the command's result, which `--json` keeps pure JSON. Undone afterwards, for the tests that
    run commands in-process."""
    from callbridge.infra.observability import logger

    name = logger().name  # set up, as every Lambda has it
    handlers = [h for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in handlers]
    for handler in handlers:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)


F = TypeVar("F", bound=Callable[..., Any])


def account_option(help_text: str = "Account id (default: the only account of the target).") -> Callable[[F], F]:
    return click.option("--account", "-a", envvar="CALLBRIDGE_ACCOUNT", help=help_text)


def resolve_account(ctx: click.Context, account: str | None) -> str:
    """The account a command acts on: the one given, or the target's only account."""
    target(ctx)
    if account:
        return account
    from callbridge.store.accounts import list_accounts

    found = list_accounts()
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError("no accounts yet: apply one with `callbridge accounts apply FILE`")
    raise click.UsageError(f"the target has several accounts ({', '.join(sorted(found))}): pass --account")
