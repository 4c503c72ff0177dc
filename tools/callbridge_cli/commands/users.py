"""PBX users: sync them from the PBX (Cloud PBX `accounts`), list the ones no mapping names."""

from __future__ import annotations

import click

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json, table

json_option = click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")


@click.group(name="users")
def group() -> None:
    """PBX users: sync them from the PBX (Cloud PBX `accounts`), list the ones no mapping names."""


@group.command()
@click.argument("account")
@json_option
@click.pass_context
def sync(ctx: click.Context, account: str, json_output: bool) -> None:
    """Ask ACCOUNT's PBX for its users now (what the schedule does) and store them."""
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.features.users import SyncNotPossible, sync_users
    from callbridge.pbx.base import PbxFailure

    try:
        report = sync_users(account)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except (PbxFailure, SyncNotPossible) as exc:
        raise CliError(str(exc)) from None
    if json_output:
        as_json(report.as_dict())
        return
    context.out.print(f"account {account}: the PBX lists {report.pbx_users} users")
    context.out.print(f"  mapped and present: {', '.join(report.mapped_seen) or '-'}")
    context.out.print(f"  mapped but not in the PBX: {', '.join(report.mapped_missing) or '-'}")
    context.out.print(f"  in the PBX without a mapping: {', '.join(report.unmapped) or '-'}")


@group.command()
@click.argument("account")
@json_option
@click.pass_context
def unmapped(ctx: click.Context, account: str, json_output: bool) -> None:
    """PBX users of ACCOUNT's last sync that no mapping names (add them to the account file)."""
    context.target(ctx)
    from callbridge.features.users import unmapped_users

    found = unmapped_users(account)
    if json_output:
        as_json(found)
        return
    table(
        f"{account}: PBX users without a mapping",
        ["pbx user", "name", "ext", "email", "synced at"],
        [[u.get("name"), u.get("real_name"), u.get("pbx_ext"), u.get("email"), u.get("synced_at")] for u in found],
    )
