"""Backfill: import a past date range of calls from ccrm.pl (callHistory), telediscount (get_calls) or
the Cloud PBX (its history command)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from callbridge_cli import context
from callbridge_cli.errors import CliError

_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def parse_when(text: str, timezone: str) -> datetime:
    """A date or date-time; in the account's time zone unless it names its own (`Z`, `+02:00`)."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
        for layout in _FORMATS:
            try:
                parsed = datetime.strptime(value, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD[ HH:MM[:SS]] or ISO 8601)")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed


class _Source(click.ParamType[str]):
    """A PBX kind whose adapter can backfill, read from callbridge.registry only when the option is
    used (the other commands do not load the adapters)."""

    name = "source"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from callbridge.features.backfill import sources

        known = sources()
        if value not in known:
            self.fail(f"{value!r} is not one of {', '.join(known)}", param, ctx)
        return str(value)


@click.command(name="backfill")
@click.option("--account", "account_id", required=True, help="Account to import into.")
@click.option(
    "--source",
    type=_Source(),
    required=True,
    help="Where the calls come from (a PBX that can backfill).",
)
@click.option("--from", "date_from", required=True, help="Start (account time zone unless given), e.g. 2024-05-01.")
@click.option("--to", "date_to", required=True, help="End, e.g. '2024-06-01 00:00' or 2024-06-01T00:00:00Z.")
@click.option(
    "--deliver/--store-only",
    default=False,
    help="Deliver the imported calls to the account's CRMs, or only store them (default).",
)
@click.option("--again", is_flag=True, help="Read a range that was already imported once more.")
@click.pass_context
def group(
    ctx: click.Context, account_id: str, source: str, date_from: str, date_to: str, deliver: bool, again: bool
) -> None:
    """Import the calls of a past date range from a call source, once.

    Safe to run twice (a call already stored is never stored or delivered again) and resumable:
    if it stops (Ctrl-C, a network error, the source's request limit), run the same command again
    and it continues at the page where it stopped.
    """
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount, get_account
    from callbridge.features.backfill import BackfillError, run
    from callbridge.pbx.base import PbxFailure

    try:
        account = get_account(account_id)
    except UnknownAccount:
        raise CliError(f"no account {account_id}") from None
    start, end = parse_when(date_from, account.timezone), parse_when(date_to, account.timezone)
    with Progress(
        TextColumn(f"{source} → {account_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=context.err,
    ) as progress:
        task = progress.add_task("backfill", total=None)

        read = [0]

        def advance(done: int, total: int | None) -> None:
            read[0] = done
            progress.update(task, completed=done, total=total)

        try:
            result = run(account_id, source, start, end, deliver=deliver, progress=advance, again=again)
        except BackfillError as exc:
            raise CliError(str(exc)) from None
        except PbxFailure as exc:
            raise CliError(
                f"stopped after {read[0]} records: {exc}. Run the same command again to continue where it stopped."
            ) from None
    if result.status == "already_complete":
        context.out.print(
            f"this range was imported before ({result.records} records); nothing to do (--again reads it once more)"
        )
        return
    if result.status == "rate_limited":
        raise CliError(
            f"{source} refused more requests (request limit) after {result.records} records; "
            "run the same command again later to continue"
        )
    mode = "stored and queued for delivery" if deliver else "stored (not delivered)"
    resumed = f", resumed at {result.resumed_at}" if result.resumed else ""
    unreadable = f"; {result.unreadable} unreadable records skipped (see the log)" if result.unreadable else ""
    context.out.print(f"{result.records} records read{resumed}: {result.stored} new calls {mode}{unreadable}")
