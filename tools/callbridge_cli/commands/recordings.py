"""Recordings: fetch again the recordings that could not be fetched; erase a caller's on request."""

from __future__ import annotations

from typing import Any

import click
from rich.progress import Progress

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json, table


@click.group(name="recordings")
def group() -> None:
    """Recordings: fetch again the recordings that could not be fetched; erase a caller's on request."""


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


# What the CRMs were sent stays there: printed after every erasure, because only the owner can act on it.
CRM_NOTE = (
    "The CRMs keep the calls they were sent, with the number and the recording link (the link no longer"
    " plays): delete the caller's calls and contact in each CRM of the account too (docs/cli.md)."
)


@group.command()
@context.account_option()
@click.option(
    "--number", metavar="PHONE", help="Every call of this number, in any format (read in the account's region)."
)
@click.option("--call", "call_id", metavar="ID", help="This one call.")
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.pass_context
def delete(
    ctx: click.Context,
    account: str | None,
    number: str | None,
    call_id: str | None,
    dry_run: bool,
    yes: bool,
    json_output: bool,
) -> None:
    """Erase a caller's recordings and stored number (a data-subject request); the calls stay, anonymised."""
    from callbridge.core.accounts import UnknownAccount
    from callbridge.features.erasure import NotANumber, UnknownCall, erase_call, erase_number

    if (number is None) == (call_id is None):
        raise click.UsageError("give either --number or --call")
    account_id = context.resolve_account(ctx, account)
    what = f"call {call_id}" if call_id is not None else "every call of this number"
    if not (dry_run or yes):
        click.confirm(f"Erase {what} in account {account_id}? This cannot be undone", abort=True, err=True)
    try:
        with context.product_logs_on_stderr():
            if call_id is not None:
                report = erase_call(account_id, call_id, dry_run=dry_run)
            else:
                report = erase_number(account_id, str(number), dry_run=dry_run)
    except UnknownAccount:
        raise CliError(f"no account {account_id!r}") from None
    except (NotANumber, UnknownCall) as exc:
        raise CliError(str(exc)) from None
    if json_output:
        as_json({"dry_run": dry_run, **report.as_dict()})
    else:
        rows = [["calls anonymised", report.calls], ["recording files deleted", report.recordings]]
        rows += [[f"items deleted ({label})", n] for label, n in sorted(report.deleted.items())]
        rows += [[f"items rewritten ({label})", n] for label, n in sorted(report.rewritten.items())]
        table("would erase (dry run)" if dry_run else "erased", ["what", "count"], rows)
    for note in report.left:
        context.err.print(f"left: {note}")
    if report.calls or report.deleted or report.rewritten:
        context.err.print(CRM_NOTE)
