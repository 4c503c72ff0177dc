"""What every command needs: the target (connected on first use) and the consoles."""

from __future__ import annotations

from dataclasses import dataclass, field

import click
from rich.console import Console

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


# Results go to stdout (pipe-able); progress and notes to stderr. No colour codes when piped.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
