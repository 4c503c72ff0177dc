"""Deliveries: the calls a CRM refused or that failed every retry, and sending them again."""

from __future__ import annotations

from typing import Any

import click

from callbridge_cli import context
from callbridge_cli.render import as_json, table

STATES = ("failed", "rejected")


@click.group(name="deliveries")
def group() -> None:
    """Deliveries: the calls a CRM refused or that failed every retry, and sending them again."""


def _crm_names(account: str, crm: str | None) -> list[str]:
    from callbridge.core.accounts import get_account
    from callbridge.core.handoff import crms_of

    names = [c.name for c in crms_of(get_account(account))]
    if crm is not None:
        if crm not in names:
            raise click.BadParameter(
                f"account {account} has no CRM named {crm!r} (it has: {', '.join(names) or 'none'})"
            )
        return [crm]
    return names


def parked(account: str, crm: str | None, state: str) -> list[dict[str, Any]]:
    from callbridge.store import deliveries as store

    return [d for name in _crm_names(account, crm) for d in store.list_parked(account, name, state)]


crm_option = click.option("--crm", help="Only this CRM of the account (its `name`, e.g. retailcrm).")
state_option = click.option(
    "--state", type=click.Choice(STATES), default="failed", show_default=True, help="Which parked deliveries."
)


@group.command("failed")
@context.account_option()
@crm_option
@state_option
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.pass_context
def failed(ctx: click.Context, account: str | None, crm: str | None, state: str, json_output: bool) -> None:
    """Deliveries parked as failed (every retry used) or rejected by the CRM, with the reason."""
    account_id = context.resolve_account(ctx, account)
    found = parked(account_id, crm, state)
    if json_output:
        as_json(found)
        return
    if not found:
        context.err.print(f"no {state} deliveries in account {account_id}")
        return
    table(
        f"{state} deliveries of account {account_id}",
        ["call id", "crm", "tries", "parked at", "reason"],
        [[d.get("call_id"), d.get("crm"), d.get("attempts"), d.get("parked_at"), d.get("reason")] for d in found],
    )


@group.command("retry")
@context.account_option()
@crm_option
@state_option
@click.option("--call", "call_ids", multiple=True, help="Only this call id (repeatable).")
@click.pass_context
def retry(ctx: click.Context, account: str | None, crm: str | None, state: str, call_ids: tuple[str, ...]) -> None:
    """Make parked deliveries pending again (tries from zero); the next drain sends them."""
    from callbridge.infra import clock
    from callbridge.store import deliveries as store

    account_id = context.resolve_account(ctx, account)
    found = [d for d in parked(account_id, crm, state) if not call_ids or d.get("call_id") in call_ids]
    requeued = sum(1 for d in found if store.requeue(account_id, str(d["call_id"]), str(d["crm"]), clock.now()))
    context.out.print(f"{requeued} {state} deliveries of account {account_id} are pending again")
