"""The `callbridge` console script: global target options and the table of command groups."""

from __future__ import annotations

import importlib
from typing import Any

import click

from callbridge_cli.context import State
from callbridge_cli.errors import CliError
from callbridge_cli.target import DEFAULT_LOCAL_URL, TargetOptions

# The command groups: name → module exposing `group` (a click.Group; its docstring is the help).
# To add a group, write tools/callbridge_cli/commands/<group>.py and add one line here (docs/cli.md).
COMMAND_GROUPS: dict[str, str] = {
    "accounts": "callbridge_cli.commands.accounts",
    "backfill": "callbridge_cli.commands.backfill",
    "calls": "callbridge_cli.commands.calls",
    "contacts": "callbridge_cli.commands.contacts",
    "deliveries": "callbridge_cli.commands.deliveries",
    "recordings": "callbridge_cli.commands.recordings",
    "users": "callbridge_cli.commands.users",
    "retailcrm": "callbridge_cli.commands.retailcrm",
    "bitrix24": "callbridge_cli.commands.bitrix24",
    "kommo": "callbridge_cli.commands.kommo",
    "smoke": "callbridge_cli.commands.smoke",
}


class _Root(click.Group):
    """Loads the groups of COMMAND_GROUPS on demand (`--help` of one group imports only it) and
    turns AWS errors anywhere below into exit code 1 with a one-line message, not a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_GROUPS.get(cmd_name)
        if module_name is None:
            return None
        command: click.Command = importlib.import_module(module_name).group
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return super().invoke(ctx)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CliError(f"AWS refused: {error.get('Code', '?')}: {error.get('Message', exc)}") from None
        except BotoCoreError as exc:
            raise CliError(f"AWS unreachable: {exc}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callbridge")
    except PackageNotFoundError:  # run from a checkout through PYTHONPATH, not installed
        return "unknown"


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--stack-name", "-s", envvar="CALLBRIDGE_STACK", help="Deployed stack to act on.")
@click.option("--region", envvar="AWS_REGION", help="AWS region of the stack.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS profile (credentials) for the stack.")
@click.option(
    "--local",
    "local_url",
    envvar="CALLBRIDGE_LOCAL",
    metavar="URL",
    help=f"Local runtime (`make run`) to act on: the default when no --stack-name is given ({DEFAULT_LOCAL_URL}).",
)
@click.version_option(version=_version(), prog_name="callbridge")
@click.pass_context
def cli(
    ctx: click.Context, stack_name: str | None, region: str | None, profile: str | None, local_url: str | None
) -> None:
    """Operate CallBridge: accounts, contacts, calls and recordings of a deployed stack or the local runtime.

    Exit codes: 0 success, 1 the command failed, 2 usage error.
    """
    ctx.obj = State(TargetOptions(local_url=local_url, stack_name=stack_name, region=region, profile=profile))


def main() -> None:
    cli(prog_name="callbridge")
