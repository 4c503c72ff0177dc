"""amoCRM / Kommo: the account's amoCRM users beside its PBX users; an integration's tokens (docs/kommo.md)."""

from __future__ import annotations

import click

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import as_json


@click.group(name="kommo")
def group() -> None:
    """amoCRM / Kommo: the account's users beside its PBX users; an integration's OAuth tokens."""


@group.command()
@click.argument("account")
@click.option("--crm", "crm_name", help="Which amoCRM of the account (its `name`); default: the first.")
@click.option("--json", "json_output", is_flag=True, help="Print the users as JSON.")
@click.pass_context
def users(ctx: click.Context, account: str, crm_name: str | None, json_output: bool) -> None:
    """List ACCOUNT's amoCRM users (GET /api/v4/users) with the PBX user each is mapped to by
    kommo_user_id, and the mappings that name nobody in amoCRM. Nothing is changed: the account
    file is the mapping."""
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.crm.kommo.users import account_users
    from callbridge.infra.http import HttpError

    try:
        rows, stale = account_users(account, crm_name)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except (LookupError, HttpError) as exc:
        raise CliError(str(exc)) from None
    if json_output:
        as_json({"users": rows, "mappings_naming_nobody": stale})
        return
    for row in rows:
        active = "" if row["active"] else " (inactive)"
        context.out.print(f"{row['id']:>10}  {row['name'] or '':<30} pbx {row['pbx_user'] or '-'}{active}")
    unmapped = [row["id"] for row in rows if row["pbx_user"] is None and row["active"]]
    if unmapped:
        context.out.print(f"amoCRM users no PBX user is mapped to: {', '.join(unmapped)}")
    if stale:
        context.out.print(f"mappings naming nobody in amoCRM: {', '.join(stale)}")


@group.command()
@click.argument("account")
@click.option("--crm", "crm_name", help="Which amoCRM of the account (its `name`); default: the first.")
@click.option("--code", help="The code from the redirect (or the whole redirected URL); default: asked for.")
@click.pass_context
def authorize(ctx: click.Context, account: str, crm_name: str | None, code: str | None) -> None:
    """Give ACCOUNT's amoCRM integration (the account file's `app`) its first tokens.

    Open the printed link in a browser, logged in to amoCRM as an administrator, and allow access;
    amoCRM sends the browser on to the integration's redirect URL with `?code=…` - paste that URL
    (or the code) within 20 minutes. The code is exchanged at the account's own host and the tokens
    are stored in SSM; from then on CallBridge refreshes them itself. Run it again whenever the
    tokens were lost (the deliveries say "authorize again")."""
    context.target(ctx)
    from callbridge.core.accounts import UnknownAccount
    from callbridge.crm.kommo import oauth
    from callbridge.crm.kommo.users import account_crm
    from callbridge.infra.http import HttpError

    try:
        _, settings = account_crm(account, crm_name)
    except UnknownAccount:
        raise CliError(f"no account {account}") from None
    except LookupError as exc:
        raise CliError(str(exc)) from None
    if settings.app is None:
        raise CliError(f"account {account}: amoCRM {settings.name} uses a long-lived token (no app section)")
    if code is None:
        context.out.print(f"open, as an administrator of the account: {oauth.authorize_url(settings)}")
        code = click.prompt("the redirected URL (or its code)", hide_input=True)
    try:
        tokens = oauth.authorize(account, settings, oauth.code_of(code))
    except HttpError as exc:
        raise CliError(str(exc)) from None
    # No token is printed: they are in SSM only.
    context.out.print(f"account {account}: amoCRM {settings.name} authorized (tokens version {tokens.version})")
