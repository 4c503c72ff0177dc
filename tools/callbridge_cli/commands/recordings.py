"""Recordings: fetch again the recordings that could not be fetched."""

from __future__ import annotations

from typing import Any

import click
from rich.progress import Progress

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import table


@click.group(name="recordings")
def group() -> None:
    """Recordings: fetch again the recordings that could not be fetched."""


def retry_candidates(account: str | None) -> list[dict[str, Any]]:
    """Calls with a recording link whose recording is not stored: marked unavailable, or never
    marked at all (its fetch message was lost, or is still in flight: the worker is idempotent)."""
    from callbridge.store.calls import recordings_not_stored

    found = recordings_not_stored(account)
    return sorted(found, key=lambda c: (str(c.get("account")), str(c.get("call_id"))))


@group.command()
@click.option("--account", "-a", envvar="CALLBRIDGE_ACCOUNT", help="Only this account (default: every account).")
@click.option("--dry-run", is_flag=True, help="Only list the calls that would be fetched again.")
@click.pass_context
def retry(ctx: click.Context, account: str | None, dry_run: bool) -> None:
    """Queue a new fetch of every recording that is unavailable or missing."""
    from callbridge.core.handoff import queue_recording_fetch
    from callbridge.infra.settings import get_settings

    context.target(ctx)
    calls = retry_candidates(account)
    if not calls:
        context.out.print("no recordings to fetch again")
        return
    table(
        "recordings to fetch again" if not dry_run else "recordings that would be fetched again",
        ["account", "call id", "state", "last error"],
        [
            [c.get("account"), c.get("call_id"), c.get("recording_state") or "missing", c.get("recording_error")]
            for c in calls
        ],
    )
    if dry_run:
        return
    if not get_settings().recording_queue_url:
        raise CliError("the target has no recording queue (output RecordingFetchQueueUrl): update the stack")
    with Progress(console=context.err) as progress:
        task = progress.add_task("queueing fetches", total=len(calls))
        for call in calls:
            queue_recording_fetch(str(call["account"]), str(call["call_id"]))
            progress.advance(task)
    context.out.print(f"{len(calls)} recording fetches queued")
