"""Calls: list an account's calls, show one with its timeline, deliveries and recording state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from callbridge.core.terms import Direction, Outcome
from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json, dumps, table

json_option = click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
T = TypeVar("T")


@click.group(name="calls")
def group() -> None:
    """Calls: list an account's calls, show one with its timeline, deliveries and recording state."""


def _account(ctx: click.Context, account: str | None) -> Any:
    from callbridge.core.accounts import UnknownAccount, get_account

    account_id = context.resolve_account(ctx, account)
    try:
        return get_account(account_id)
    except UnknownAccount:
        raise CliError(f"no account {account_id!r}") from None


def _query(action: Callable[[], T]) -> T:
    from callbridge.features.calls import BadQuery

    try:
        return action()
    except BadQuery as error:
        raise click.UsageError(str(error)) from None


@group.command("list")
@context.account_option()
@click.option(
    "--from", "since", metavar="TIME", help="Calls that started at or after TIME (ISO 8601 with a zone, or a date)."
)
@click.option("--to", "before", metavar="TIME", help="Calls that started before TIME.")
@click.option("--direction", type=click.Choice([d.value for d in Direction]))
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]))
@click.option("--phone", help="The client's number, any format (matched in E.164).")
@click.option("--user", help="The PBX user who took or made the call.")
@click.option("--limit", "-n", type=int, help="Calls per page (1..500, default 50).")
@click.option("--cursor", help="Go on where the previous page stopped (the cursor it printed).")
@json_option
@click.pass_context
def list_calls(
    ctx: click.Context,
    account: str | None,
    since: str | None,
    before: str | None,
    direction: str | None,
    outcome: str | None,
    phone: str | None,
    user: str | None,
    limit: int | None,
    cursor: str | None,
    json_output: bool,
) -> None:
    """The account's calls, newest first, a page at a time (the query of GET /v1/{account}/calls)."""
    from callbridge.features.calls import DEFAULT_LIMIT, CallFilter, recording_state
    from callbridge.features.calls import list_calls as calls_page

    found = _account(ctx, account)
    asked = {"from": since, "to": before, "direction": direction, "outcome": outcome, "phone": phone, "user": user}
    page = _query(
        lambda: calls_page(
            found, CallFilter.parse(found, asked), limit=DEFAULT_LIMIT if limit is None else limit, cursor=cursor
        )
    )
    calls = page.calls
    if page.next_cursor:
        # stderr: `--json` keeps its list of calls on stdout.
        context.err.print(f"more calls: --cursor {page.next_cursor}", markup=False, soft_wrap=True)
    if json_output:
        as_json(calls)
        return
    if not calls:
        context.err.print(
            f"no calls in account {found.id} yet" if not cursor and not any(asked.values()) else "no calls"
        )
        return
    table(
        None,
        ["call id", "started", "direction", "outcome", "phone", "user", "s", "recording"],
        [
            [
                c.get("call_id"),
                c.get("started_at"),
                c.get("direction"),
                c.get("outcome") or ("" if c.get("final") else "in progress"),
                c.get("phone"),
                c.get("user"),
                c.get("duration"),
                recording_state(c) if recording_state(c) != "none" else "",
            ]
            for c in calls
        ],
    )


@group.command()
@click.argument("call_id")
@context.account_option()
@json_option
@click.pass_context
def show(ctx: click.Context, call_id: str, account: str | None, json_output: bool) -> None:
    """One call CALL_ID: the canonical call, every webhook received (timeline), deliveries, recording
    (the answer of GET /v1/{account}/calls/{callid}; the playback link points at the target's API)."""
    from callbridge.features.calls import call_detail

    found = _account(ctx, account)
    detail = call_detail(found, call_id, base_url=context.target(ctx).base_url)
    if detail is None:
        raise CliError(f"no call {call_id!r} in account {found.id}")
    if json_output:
        as_json(detail.as_dict())
        return

    call, events, deliveries, recording = detail.call, detail.timeline, detail.deliveries, detail.recording
    context.out.print(f"call {call_id} (account {found.id})")
    for name, value in call.items():
        if name not in ("account", "call_id") and value not in (None, "", []):
            shown = ", ".join(sorted(map(str, value))) if isinstance(value, set | list) else value
            context.out.print(f"  {name}: {shown}", markup=False)
    table(
        "timeline",
        ["received", "webhook", "type", "user", "payload"],
        [[e.get("received_at"), e.get("cmd"), e.get("type"), e.get("user"), _short(e.get("raw"))] for e in events],
    )
    if deliveries:
        table(
            "deliveries",
            ["crm", "state", "attempts", "detail"],
            [
                [
                    d["crm"],
                    d.get("state") or d.get("status"),
                    d.get("attempts"),
                    d.get("error")
                    or d.get("last_error")
                    or d.get("reason")
                    or (d.get("crm_answer") or {}).get("callback"),
                ]
                for d in deliveries
            ],
        )
    else:
        context.out.print("deliveries: none")
    line = f"recording: {recording['state']}"
    if recording.get("error"):
        line += f" ({recording['error']})"
    context.out.print(line, markup=False)
    if recording.get("playback_url"):
        context.out.print(f"playback: {recording['playback_url']}", markup=False, soft_wrap=True)


def _short(raw: Any, limit: int = 120) -> str:
    text = raw if isinstance(raw, str) else dumps(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
