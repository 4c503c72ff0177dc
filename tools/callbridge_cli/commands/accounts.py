"""Accounts: apply a config file, list accounts, show one (secrets masked)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import MASK, as_json, table

if TYPE_CHECKING:
    from callbridge.core.config import AccountConfig
    from callbridge_cli.target import Target

json_option = click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")


@click.group(name="accounts")
def group() -> None:
    """Accounts: apply a config file, list accounts, show one (secrets masked)."""


def _validation_message(path: Path, error: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors()]
    return f"{path} is not a valid account file:\n  " + "\n  ".join(problems)


@group.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only validate the file.")
@click.pass_context
def apply(ctx: click.Context, file: Path, dry_run: bool) -> None:
    """Validate an account FILE and store it: config in DynamoDB, secrets in SSM (SecureString).

    Prints the addresses and keys to paste into the PBX and CRM cabinets.
    """
    from callbridge.core.config import load_account_file

    try:
        config = load_account_file(file)
    except ValidationError as exc:
        raise CliError(_validation_message(file, exc)) from None
    except (ValueError, OSError) as exc:
        raise CliError(f"{file}: {exc}") from None
    if dry_run:
        context.out.print(f"{file}: account {config.account} is valid")
        return

    from callbridge.features.admin import apply_account, cabinet_lines

    target = context.target(ctx)
    report = apply_account(config)
    context.out.print(f"account {config.account} applied to {target.label}")
    context.out.print(f"contacts stored: {report.contacts_stored}")
    if report.contact_phones_rejected:
        context.out.print(f"phones not understood, skipped: {', '.join(report.contact_phones_rejected)}")
    lines = (cabinet_lines(config, target.base_url) if target.base_url else []) + egress_lines(config, target)
    if lines:
        context.out.print("\nPaste into the cabinets (keep these keys private):")
        for line in lines:
            context.out.print(f"  {line}")


def egress_lines(config: AccountConfig, target: Target) -> list[str]:
    """MiniCRM's CallLog API answers only the IPs on its whitelist: a stack deployed with a fixed
    egress names its IPs (output EgressIps). The local runtime has no fixed egress: nothing to say."""
    if target.kind != "stack" or not any(crm.kind == "minicrm" for crm in config.crms):
        return []
    account = config.account
    if target.egress_ips:
        ips = ", ".join(target.egress_ips)
        return [f"account {account}: send MiniCRM support these IPs for its CallLog API whitelist (EgressIps): {ips}"]
    return [
        f"account {account}: MiniCRM takes CallLog requests only from whitelisted IPs and this stack has no "
        "EgressIps output: deploy with FixedEgress=one-az or two-az, or send MiniCRM your own NAT's IPs (docs/minicrm.md)"
    ]


def _account_items() -> list[dict[str, Any]]:
    from callbridge.store.accounts import get_account_item, list_accounts

    items = [get_account_item(account) for account in list_accounts()]
    return sorted((i for i in items if i is not None), key=lambda i: str(i.get("account", "")))


@group.command("list")
@json_option
@click.pass_context
def list_accounts(ctx: click.Context, json_output: bool) -> None:
    """Every account of the target."""
    context.target(ctx)
    rows: list[dict[str, Any]] = [
        {
            "account": i.get("account"),
            "name": i.get("name"),
            "pbx": i.get("pbx_kind"),
            "crms": [c.get("name") for c in (i.get("config") or {}).get("crms") or []],
            "updated_at": i.get("updated_at"),
        }
        for i in _account_items()
    ]
    if json_output:
        as_json(rows)
        return
    if not rows:
        context.err.print("no accounts yet: apply one with `callbridge accounts apply FILE`")
        return
    table(
        None,
        ["account", "name", "pbx", "crms", "updated"],
        [[r["account"], r["name"], r["pbx"], ", ".join(str(c) for c in r["crms"]), r["updated_at"]] for r in rows],
    )


def _secret_names(account: str) -> list[str]:
    """Names of the account's secrets in SSM; their values are never read here."""
    from callbridge.infra import aws, secrets

    path = secrets.account_path(account)
    names: list[str] = []
    for page in (
        aws.ssm()
        .get_paginator("describe_parameters")
        .paginate(ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": [path]}])
    ):
        names.extend(p["Name"][len(path) + 1 :] for p in page.get("Parameters", []) if "Name" in p)
    return sorted(names)


@group.command()
@click.argument("name")
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, json_output: bool) -> None:
    """One account NAME: its config, users, and which secrets are set (values masked)."""
    from callbridge.store import users
    from callbridge.store.accounts import get_account_item

    context.target(ctx)
    item = get_account_item(name)
    if item is None:
        raise CliError(f"no account {name!r}")
    data = {
        "account": name,
        "name": item.get("name"),
        "updated_at": item.get("updated_at"),
        "config": item.get("config") or {},
        "users": users.mapped(name),
        "secrets": {secret: MASK for secret in _secret_names(name)},
    }
    if json_output:
        as_json(data)
        return
    import yaml

    context.out.print(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip(), markup=False)
