"""Smoke: play the Cloud PBX for one call against a running CallBridge and check every answer and
the stored call (callbridge_cli/smoke_checks.py; docs/deploy.md, "Smoke check")."""

from __future__ import annotations

import click

from callbridge_cli import context
from callbridge_cli.errors import EXIT_FAILURE


@click.command(name="smoke")
@click.option(
    "--url",
    metavar="URL",
    help="Base URL of the HTTP API (stack output ApiUrl). Default: the target's (--stack-name or --local).",
)
@click.option("--account", "-a", envvar="CALLBRIDGE_ACCOUNT", required=True, help="A Cloud PBX account of the target.")
@click.option(
    "--crm-token",
    envvar="CALLBRIDGE_CRM_TOKEN",
    required=True,
    help="The account's Cloud PBX crm_token (better: env CALLBRIDGE_CRM_TOKEN, kept out of the shell history).",
)
@click.option(
    "--api-key",
    envvar="CALLBRIDGE_API_KEY",
    required=True,
    help="One of the account's api_keys, for GET /v1/{account}/calls/{callid} (better: env CALLBRIDGE_API_KEY).",
)
@click.option(
    "--deliver",
    is_flag=True,
    help="Send the call from --phone so that the account's CRMs get it, and wait until each has it. "
    "Without it the call has a withheld caller id and reaches no CRM.",
)
@click.option("--phone", metavar="NUMBER", help="With --deliver: the client's number, as the PBX sends it.")
@click.option(
    "--user", default="callbridge-smoke", show_default=True, help="The PBX user who takes the call (unmapped: no card)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the stored call (and with --deliver, for its deliveries).",
)
@click.pass_context
def group(
    ctx: click.Context,
    url: str | None,
    account: str,
    crm_token: str,
    api_key: str,
    deliver: bool,
    phone: str | None,
    user: str,
    timeout: float,
) -> None:
    """Send one smoke call as the Cloud PBX and check the answers and the stored call.

    Checks, one line each: health, a wrong crm_token refused, contact, the events INCOMING, ACCEPTED
    and COMPLETED, history, the call read back through the calls API, its deliveries. The call id
    is new each run (callbridge-smoke-<UTC time>-<random>). Exit codes: 0 every check passed,
    1 a check failed (named on its line), 2 usage.
    """
    from datetime import UTC, datetime

    from callbridge_cli.smoke_checks import WITHHELD, Check, Plan, run

    if deliver and not phone:
        raise click.UsageError("--deliver needs --phone: the number the CRMs file the call under")
    if phone and not deliver:
        raise click.UsageError("--phone is for --deliver only: without it the smoke call has a withheld caller id")
    if url is None:
        url = context.target(ctx).base_url
        if not url:
            raise click.UsageError("the stack has no ApiUrl output: pass --url")
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"--url must be an http(s) URL, got {url!r}")
    started = datetime.now(UTC).replace(microsecond=0)
    plan = Plan(
        base_url=url.rstrip("/"),
        account=account,
        crm_token=crm_token,
        api_key=api_key,
        deliver=deliver,
        phone=phone or WITHHELD,
        user=user,
        timeout_s=timeout,
        call_id=Plan.new_call_id(started),
        started=started,
    )
    context.out.print(f"smoke call {plan.call_id} to account {account} at {plan.base_url}", markup=False)

    def report(check: Check) -> None:
        context.out.print(
            f"{'ok' if check.ok else 'FAIL':<5} {check.name}: {check.detail}", markup=False, soft_wrap=True
        )

    failed = run(plan, report)
    if failed is not None:
        context.out.print(f"smoke check FAILED at {failed.name}", markup=False)
        ctx.exit(EXIT_FAILURE)
    context.out.print("smoke check passed", markup=False)
