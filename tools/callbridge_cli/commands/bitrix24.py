"""Bitrix24: the portal's users beside the account's PBX users (docs/bitrix24.md)."""

from __future__ import annotations

import click

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json


@click.group(name="bitrix24")
def group() -> None:
    """Bitrix24: the portal's users beside the account's PBX users; a local application's tokens."""


@group.command()
@click.argument("account")
@click.option("--crm", "crm_name", help="Which Bitrix24 of the account (its `name`); default: the first.")
@click.option("--json", "json_output", is_flag=True, help="Print the users as JSON.")
@click.pass_context
def users(ctx: click.Context, account: str, crm_name: str | None, json_output: bool) -> None:
    """List ACCOUNT's Bitrix24 users (user.get) with the PBX user each is mapped to - by
    bitrix24_user_id, else by inner phone = bitrix24_inner_phone or extension - and the mappings
    that name nobody in the portal. Nothing is changed: the account file is the mapping."""
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.crm.bitrix24.users import portal_users
    from callbridge.infra.http import HttpError

    try:
        rows, stale = portal_users(account, crm_name)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except (LookupError, HttpError) as exc:
        raise CliError(str(exc)) from None
    if json_output:
        as_json({"users": rows, "mappings_naming_nobody": stale})
        return
    for row in rows:
        mapped = row["pbx_user"] or "-"
        context.out.print(f"{row['id']:>6}  {row['name'] or '':<30} inner {row['inner_phone'] or '-':<8} pbx {mapped}")
    if stale:
        context.out.print(f"mappings naming nobody in Bitrix24: {', '.join(stale)}")


@group.command()
@click.argument("account")
@click.option("--crm", "crm_name", help="Which Bitrix24 of the account (its `name`); default: the first.")
@click.option("--code", help="The code from the redirect (or the whole redirected URL); default: asked for.")
@click.pass_context
def authorize(ctx: click.Context, account: str, crm_name: str | None, code: str | None) -> None:
    """Give ACCOUNT's Bitrix24 local application (the account file's `app`) its first tokens.

    Open the printed link in a browser, logged in to the portal as an administrator; Bitrix24 sends
    the browser on to the application's handler URL with `?code=…` - paste that URL (or the code)
    within 30 seconds. The code is exchanged at the OAuth server, the tokens are checked against
    app.portal (and app.member_id) and stored in SSM; from then on CallBridge refreshes them itself.
    Run it again whenever the tokens were lost (the deliveries say "authorize again")."""
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.crm.bitrix24 import oauth
    from callbridge.infra.http import HttpError

    try:
        settings = oauth.account_app(account, crm_name)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except LookupError as exc:
        raise CliError(str(exc)) from None
    assert settings.app is not None
    if code is None:
        context.out.print(f"open, as an administrator of the portal: {oauth.authorize_url(settings.app)}")
        code = click.prompt("the redirected URL (or its code)", hide_input=True)
    try:
        tokens = oauth.authorize(account, settings, oauth.code_of(code))
    except (ValueError, HttpError) as exc:
        raise CliError(str(exc)) from None
    # No token is printed: they are in SSM only.
    context.out.print(f"account {account}: Bitrix24 {settings.name} authorized (tokens version {tokens.version})")
