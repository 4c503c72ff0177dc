"""retailCRM: register (or update) our telephony module in an account's retailCRM."""

from __future__ import annotations

import click

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json


@click.group(name="retailcrm")
def group() -> None:
    """retailCRM: register (or update) our telephony module in an account's retailCRM."""


@group.command()
@click.argument("account")
@click.option("--crm", "crm_name", help="Which retailCRM of the account (its `name`); default: the first.")
@click.option(
    "--base-url",
    envvar="PUBLIC_BASE_URL",
    help="Public base URL of our API, as retailCRM reaches it (env PUBLIC_BASE_URL; default: the target's API URL).",
)
@click.option("--json", "json_output", is_flag=True, help="Print the module as sent.")
@click.pass_context
def register(ctx: click.Context, account: str, crm_name: str | None, base_url: str | None, json_output: bool) -> None:
    """Register the telephony module (makeCallUrl, changeUserStatusUrl, clientId, extension codes,
    external phones) in ACCOUNT's retailCRM. Running it again updates the module, never duplicates it."""
    target = context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.crm.retailcrm.registration import RegistrationError
    from callbridge.crm.retailcrm.registration import register as register_module
    from callbridge.infra.http import HttpError

    base = base_url or target.base_url
    if not base:
        raise CliError("no public base URL: pass --base-url or set PUBLIC_BASE_URL")
    try:
        payload = register_module(account, base, crm_name=crm_name)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except (RegistrationError, HttpError) as exc:
        raise CliError(str(exc)) from None
    telephony = payload["integrations"]["telephony"]
    if json_output:
        shown = {**payload, "clientId": "***", "integrations": {"telephony": {**telephony, "clientId": "***"}}}
        as_json(shown)
        return
    context.out.print(f"module {payload['code']} registered in account {account}'s retailCRM")
    context.out.print(f"  makeCallUrl: {telephony['makeCallUrl']}")
    context.out.print(f"  changeUserStatusUrl: {telephony['changeUserStatusUrl']}")
    context.out.print(
        f"  extension codes: {len(telephony['additionalCodes'])}, external phones: {len(telephony['externalPhones'])}"
    )
