"""Calls: list an account's calls, show one with its timeline, deliveries and recording state."""

from __future__ import annotations

from typing import Any

import click

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json, dumps, table

json_option = click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
CALL_FIELDS = (
    "direction",
    "outcome",
    "missed_reason",
    "phone",
    "our_number",
    "user",
    "users_rang",
    "duration",
    "started_at",
    "final",
    "source",
)


@click.group(name="calls")
def group() -> None:
    """Calls: list an account's calls, show one with its timeline, deliveries and recording state."""


@group.command("list")
@context.account_option()
@click.option(
    "--limit", "-n", type=click.IntRange(1, 1000), default=50, show_default=True, help="Newest calls to show."
)
@json_option
@click.pass_context
def list_calls(ctx: click.Context, account: str | None, limit: int, json_output: bool) -> None:
    """The account's newest calls."""
    from callbridge.store.calls import list_calls as stored_calls

    account_id = context.resolve_account(ctx, account)
    calls = [{k: v for k, v in c.items() if not k.startswith("gsi")} for c in stored_calls(account_id, limit)]
    if json_output:
        as_json(calls)
        return
    if not calls:
        context.err.print(f"no calls in account {account_id} yet")
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
                c.get("recording_state") or ("pending" if c.get("recording_url") else ""),
            ]
            for c in calls
        ],
    )


def _deliveries(account: str, call_id: str) -> list[dict[str, Any]]:
    from callbridge.store.deliveries import of_call
    from callbridge.store.keys import DELIVERY_PREFIX

    return [
        {
            "crm": str(item["sk"]).removeprefix(DELIVERY_PREFIX),
            **{k: v for k, v in item.items() if k not in ("pk", "sk")},
        }
        for item in of_call(account, call_id)
    ]


def recording_state(call: dict[str, Any]) -> str:
    if call.get("recording_state"):
        return str(call["recording_state"])
    return "pending" if call.get("recording_url") else "none"


@group.command()
@click.argument("call_id")
@context.account_option()
@json_option
@click.pass_context
def show(ctx: click.Context, call_id: str, account: str | None, json_output: bool) -> None:
    """One call CALL_ID: the canonical call, every webhook received (timeline), deliveries, recording."""
    from callbridge.store.calls import get_call, timeline

    account_id = context.resolve_account(ctx, account)
    call = get_call(account_id, call_id)
    if call is None:
        raise CliError(f"no call {call_id!r} in account {account_id}")
    events = [
        {k: v for k, v in e.items() if k in ("received_at", "cmd", "type", "user", "raw")}
        for e in timeline(account_id, call_id)
    ]
    deliveries = _deliveries(account_id, call_id)
    recording = {
        "state": recording_state(call),
        "error": call.get("recording_error"),
        "object": call.get("recording"),
    }
    if json_output:
        as_json({"call": call, "timeline": events, "deliveries": deliveries, "recording": recording})
        return

    context.out.print(f"call {call_id} (account {account_id})")
    for name in CALL_FIELDS:
        value = call.get(name)
        if value not in (None, ""):
            shown = ", ".join(sorted(value)) if isinstance(value, set | list) else value
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
    if recording["error"]:
        line += f" ({recording['error']})"
    context.out.print(line, markup=False)


def _short(raw: Any, limit: int = 120) -> str:
    text = raw if isinstance(raw, str) else dumps(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
