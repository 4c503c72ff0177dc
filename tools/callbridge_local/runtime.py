"""Assembles the local cloud (moto, provisioning, gateway, drivers) and the command line around it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from callbridge_local import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DEFAULT_STACK_NAME, iam
from callbridge_local.cfn_yaml import TemplateSyntaxError
from callbridge_local.control import ControlApi
from callbridge_local.cors import api_cors
from callbridge_local.drivers import (
    QueueDriver,
    QueuePoller,
    QueueSource,
    ScheduleDriver,
    ScheduleEvent,
    ScheduleSource,
    SqsMapping,
    scheduled_event,
)
from callbridge_local.emulator import LOCALHOST, EmulatorError, MotoServer, aws_env, point_environ_at
from callbridge_local.gateway import Gateway
from callbridge_local.handlers import FunctionRegistry, prepare_sys_path
from callbridge_local.intrinsics import IntrinsicError
from callbridge_local.provision import AwsTarget, ProvisionedStack, ProvisionError, provision
from callbridge_local.routing import Route, RouteError, RouteTable
from callbridge_local.samlocal import write_sam_env_vars
from callbridge_local.template import Template, TemplateError, load_template

log = logging.getLogger("callbridge_local")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
READY_MESSAGE = "CallBridge local is ready on"
AWS_ENDPOINT_MESSAGE = "AWS endpoint:"
ENV_VARS_MESSAGE = "sam local --env-vars:"
DEFAULT_ENV_VARS = Path(".aws-sam") / "local-env-vars.json"  # beside the template


class AccountsError(RuntimeError):
    """The account configuration files could not be applied."""


# Expected, explainable startup failures: reported in one line, without a traceback.
STARTUP_ERRORS: tuple[type[Exception], ...] = (
    TemplateSyntaxError,
    TemplateError,
    IntrinsicError,
    ProvisionError,
    EmulatorError,
    RouteError,
    AccountsError,
    iam.PolicyError,
    OSError,
)


class StartupInterrupted(Exception):
    """A stop was requested while the runtime was starting."""


@dataclass
class RuntimeConfig:
    template_path: Path = DEFAULT_TEMPLATE
    host: str = "127.0.0.1"
    port: int = 3000
    aws_port: int = 0
    # None: do not apply account files.
    accounts_dir: Path | None = None
    params: dict[str, str] = field(default_factory=dict)
    schedules: bool = True
    stack_name: str = DEFAULT_STACK_NAME
    region: str = DEFAULT_REGION
    log_level: str = "INFO"
    # Where to write the `sam local --env-vars` file (samlocal.py); None: nowhere.
    env_vars_path: Path | None = None
    # Caps the event-source mappings' MaximumBatchingWindowInSeconds (tests: a batch need not wait
    # seconds to fill); None waits each window out as Lambda does.
    max_batching_window: float | None = None


def apply_accounts(directory: Path, base_url: str) -> list[str]:
    """Run callbridge.features.admin.apply_accounts_dir; its lines are what to paste into the PBX cabinet.

    One of the two product modules the runtime imports (the other: core/config.py, below); the
    `local-runtime-boundary` contract in pyproject.toml holds it to them."""
    try:
        # Imported only now: it reads settings from the environment the runtime has just set.
        from callbridge.features import admin
    except ImportError as exc:
        if exc.name in ("callbridge", "callbridge.features", "callbridge.features.admin"):
            raise AccountsError(
                "callbridge.features.admin is not available, so account files cannot be applied"
            ) from exc
        raise
    return [str(line) for line in admin.apply_accounts_dir(directory, base_url)]


def _shown_path(path: Path) -> str:
    """``path`` as the user probably typed it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_account_files(directory: Path) -> None:
    """Validate every account file before anything starts, so that a mistake costs a second, not a
    whole start-up, and is reported as ``<file>: <field>: <problem>``, one line per problem.

    Nothing is applied when one file is wrong: half an accounts directory is a confusing bridge.
    """
    try:
        # Only the model: applying (admin) reads AWS settings, which are not set up yet.
        import pydantic
        import yaml

        from callbridge.core import config as config_module
    except ImportError:
        # apply_accounts says so (and skips the directory) once the runtime is up.
        return
    problems: list[str] = []
    suffixes = tuple(config_module.ACCOUNT_FILE_SUFFIXES)  # the files admin.apply_accounts_dir applies
    for path in sorted(p for p in directory.iterdir() if p.suffix in suffixes):
        shown = _shown_path(path)
        try:
            config_module.load_account_file(path)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                location = ".".join(str(part) for part in error["loc"]) or "(top level)"
                problems.append(f"{shown}: {location}: {error['msg']}")
        except yaml.YAMLError as exc:
            problems.append(f"{shown}: not valid YAML: {' '.join(str(exc).split())}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{shown}: {str(exc).removeprefix(f'{path}: ')}")
    if problems:
        raise AccountsError("account files refused:\n  " + "\n  ".join(problems))


class LocalRuntime:
    """The whole local cloud in this process. ``start()`` then ``stop()``; stop is always safe."""

    def __init__(self, config: RuntimeConfig, *, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out or sys.stdout
        # Loopback whatever --host says: moto answers anyone, without credentials, and holds every
        # account secret (SSM). Only the gateway is meant to be reachable from elsewhere.
        self.moto = MotoServer(LOCALHOST, config.aws_port)
        self.stack: ProvisionedStack | None = None
        self.gateway: Gateway | None = None
        self.functions: FunctionRegistry | None = None
        self.queue_driver: QueueDriver | None = None
        self.schedule_driver: ScheduleDriver | None = None
        self.account_lines: list[str] = []
        self.iam: iam.Enforcer | None = None

    @property
    def base_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the runtime is not started")
        return self.gateway.url

    @property
    def aws_endpoint(self) -> str:
        return self.moto.endpoint_url

    def start(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        try:
            self._start(should_stop)
        except BaseException:
            self.stop()
            raise

    def _checkpoint(self, should_stop: Callable[[], bool]) -> None:
        if should_stop():
            raise StartupInterrupted

    def _start(self, should_stop: Callable[[], bool]) -> None:
        config = self.config
        template = load_template(config.template_path, config.params)
        if config.accounts_dir is not None and not config.accounts_dir.is_dir():
            raise AccountsError(f"accounts directory {config.accounts_dir} does not exist")
        # Layer code importable now: the account files are checked with the product's own model.
        prepare_sys_path(template)
        if config.accounts_dir is not None:
            check_account_files(config.accounts_dir)
        self._checkpoint(should_stop)
        endpoint = self.moto.start()
        # Before anything imports handler or layer code: they read these at import or first use.
        point_environ_at(endpoint, config.region)
        self._checkpoint(should_stop)
        stack = provision(
            template, AwsTarget(endpoint, config.region), stack_name=config.stack_name, params=config.params
        )
        self.stack = stack
        os.environ.update(stack.environment)
        self._checkpoint(should_stop)

        functions = self.functions = self._functions(template, stack)
        self._enforce_iam(stack)  # iam.py: every function's AWS calls are checked against its role
        routes = RouteTable(
            Route.create(route.method, route.path, function.logical_id, stack.api_id(route.api))
            for function in stack.functions
            for route in function.http_events
            if stack.created(route.api)
        )
        self.queue_driver = QueueDriver(self._queue_pollers(stack, functions))
        self.schedule_driver = ScheduleDriver(self._schedule_sources(stack, functions), self._schedule_event)
        control = ControlApi(
            functions=functions,
            routes=routes,
            queues=self.queue_driver,
            schedules=self.schedule_driver.sources,
            schedule_event=self._schedule_event,
            info={
                "awsEndpoint": endpoint,
                "region": config.region,
                "stackName": config.stack_name,
                "aws": aws_env(endpoint, config.region),
                "environment": stack.environment,
            },
        )
        self.gateway = Gateway(
            routes,
            functions,
            account_id=DEFAULT_ACCOUNT_ID,
            control=control,
            host=config.host,
            port=config.port,
            cors=api_cors(stack),
        )
        self.gateway.bind()
        # Recording links given to the CRMs point at this gateway unless --param PublicBaseUrl=… says
        # otherwise (the template's API_URL fallback names an AWS host that does not exist here).
        if not os.environ.get("PUBLIC_BASE_URL"):
            os.environ["PUBLIC_BASE_URL"] = self.gateway.url
        if config.env_vars_path is not None:
            written = write_sam_env_vars(config.env_vars_path, stack, public_base_url=self.gateway.url)
            print(f"{ENV_VARS_MESSAGE} {written}", file=self.out, flush=True)
        for route in routes.routes:
            log.info("route %-40s -> %s", route.route_key, route.function_id)
        self._checkpoint(should_stop)

        if config.accounts_dir is not None:
            self._apply_accounts(config.accounts_dir)
        self._checkpoint(should_stop)
        self.gateway.serve()
        self.queue_driver.start()
        if config.schedules:
            self.schedule_driver.start()
        else:
            log.info("scheduled runs are off (--no-schedules); use POST /_local/schedules/<Function>")

    def _functions(self, template: Template, stack: ProvisionedStack) -> FunctionRegistry:
        included = [f.logical_id for f in stack.functions]
        return FunctionRegistry.build(
            template,
            names={fid: stack.physical_name(fid) for fid in included},
            arns={fid: str(stack.resources[fid].attributes["Arn"]) for fid in included},
            region=self.config.region,
            only=included,
            roles={f.logical_id: stack.role_arn(f) for f in stack.functions},
        )

    def _queue_pollers(self, stack: ProvisionedStack, functions: FunctionRegistry) -> list[QueuePoller]:
        pollers = []
        for function in stack.functions:
            for mapping in function.sqs_events:
                if not stack.created(mapping.name):
                    continue
                properties = stack.resolve(mapping.name, mapping.properties)
                queue = stack.resources[mapping.queue]
                source = QueueSource(
                    functions[function.logical_id],
                    SqsMapping.from_properties(mapping.name, properties),
                    str(queue.ref),
                    str(queue.attributes["Arn"]),
                )
                # A client per poller: each thread long-polls on its own connection.
                client = stack.target.client("sqs")
                iam.bind_client(client, function.logical_id)  # Lambda polls as the function's role
                pollers.append(
                    QueuePoller(source, client, self.config.region, max_batching_window=self.config.max_batching_window)
                )
        return pollers

    def _schedule_sources(self, stack: ProvisionedStack, functions: FunctionRegistry) -> list[ScheduleSource]:
        sources = []
        for function in stack.functions:
            for rule in function.schedule_events:
                if not stack.created(rule.name):
                    continue
                expression, state, raw_input = stack.resolve(rule.name, [rule.expression, rule.state, rule.input])
                schedule = ScheduleEvent.from_properties(rule.name, rule.type, expression, state, raw_input)
                sources.append(ScheduleSource(functions[function.logical_id], schedule))
        return sources

    def _enforce_iam(self, stack: ProvisionedStack) -> None:
        """The functions' roles as the SAM transform wrote them, enforced from now on (iam.py)."""
        names = {f.logical_id: stack.physical_name(f.logical_id) for f in stack.functions}
        self.iam = iam.Enforcer(iam.function_roles(stack.template.raw, stack.resolver, names), DEFAULT_ACCOUNT_ID)
        iam.install(self.iam)

    def _apply_accounts(self, directory: Path) -> None:
        try:
            self.account_lines = apply_accounts(directory, self.base_url)
        except AccountsError as exc:
            if isinstance(exc.__cause__, ImportError):
                log.warning("%s; skipping %s", exc, directory)
                return
            raise
        except Exception as exc:
            # Usually a mistake in an account file: say which, in one line (details at DEBUG).
            raise AccountsError(f"could not apply the account files in {directory}: {exc}") from exc
        for line in self.account_lines:
            print(line, file=self.out, flush=True)

    def _schedule_event(self, source: ScheduleSource) -> object:
        return scheduled_event(
            source.function,
            source.schedule,
            region=self.config.region,
            account_id=DEFAULT_ACCOUNT_ID,
            stack_name=self.config.stack_name,
        )

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; safe to call more than once."""
        for driver in (self.schedule_driver, self.queue_driver):
            if driver is not None:
                driver.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.iam is not None:  # iam.py: what the functions' roles allowed and no call used
            iam.uninstall()
            report_dir = os.environ.get(iam.REPORT_DIR_ENV)
            if report_dir:
                log.info("IAM report: %s", iam.write_report(self.iam, Path(report_dir)))
            self.iam = None
        self.moto.stop()


# -- command line ------------------------------------------------------------------------------


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a port number, got {raw!r}") from None


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected Key=Value, got {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> RuntimeConfig:
    parser = argparse.ArgumentParser(
        prog="python -m callbridge_local",
        description="Run CallBridge locally: AWS emulated by moto, HTTP API on 127.0.0.1.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP API (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=_int_env("CALLBRIDGE_PORT", 3000), help="HTTP API port (env CALLBRIDGE_PORT)"
    )
    parser.add_argument(
        "--aws-port",
        type=int,
        default=_int_env("CALLBRIDGE_AWS_PORT", 0),
        help="port of the emulated AWS endpoint; 0 picks a free one (env CALLBRIDGE_AWS_PORT)",
    )
    parser.add_argument(
        "--accounts",
        default=os.environ.get("CALLBRIDGE_ACCOUNTS_DIR"),
        help="directory of account files to apply; '' applies none "
        "(env CALLBRIDGE_ACCOUNTS_DIR, default accounts/ beside the template)",
    )
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template (default: the repo's)")
    parser.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="Key=Value",
        help="template parameter override, repeatable",
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="stack name (default %(default)s)")
    parser.add_argument("--no-schedules", action="store_true", help="do not run rate() schedules on their own")
    parser.add_argument(
        "--max-batching-window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait at most this long for an SQS batch to fill, whatever MaximumBatchingWindowInSeconds says "
        "(default: as the event-source mapping declares)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--env-vars",
        default=os.environ.get("CALLBRIDGE_ENV_VARS"),
        help=f"where to write the `sam local invoke|start-api --env-vars` file; '' writes none "
        f"(env CALLBRIDGE_ENV_VARS, default {DEFAULT_ENV_VARS} beside the template)",
    )
    args = parser.parse_args(argv)
    template_path = Path(args.template).resolve()
    if args.accounts is None:
        default_accounts = template_path.parent / "accounts"
        accounts_dir = default_accounts if default_accounts.is_dir() else None
    else:
        accounts_dir = Path(args.accounts).resolve() if args.accounts.strip() else None
    if args.env_vars is None:
        env_vars_path: Path | None = template_path.parent / DEFAULT_ENV_VARS
    else:
        env_vars_path = Path(args.env_vars).resolve() if args.env_vars.strip() else None
    return RuntimeConfig(
        env_vars_path=env_vars_path,
        template_path=template_path,
        host=args.host,
        port=args.port,
        aws_port=args.aws_port,
        accounts_dir=accounts_dir,
        params=dict(args.param),
        schedules=not args.no_schedules,
        stack_name=args.stack_name,
        log_level=args.log_level,
        max_batching_window=args.max_batching_window,
    )


class _NotPowertools(logging.Filter):
    """Drops records of a Powertools Logger (and its children): Powertools already writes them, as
    JSON on stdout, with the handler it gives that logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        while name:
            if getattr(logging.Logger.manager.loggerDict.get(name), "powertools_handler", None) is not None:
                return False
            name = name.rpartition(".")[0]
        return True


def _configure_logging() -> None:
    # A Powertools Logger, on creation, adds a filter to every root handler that drops records of any
    # logger whose name *contains* its service name ("callbridge"), meaning to drop its own records'
    # duplicates: that silenced every callbridge_local line (the request log among them) from the
    # first handler that logged. Turn that off before any handler is imported; _NotPowertools does
    # the deduplication precisely instead.
    os.environ["POWERTOOLS_LOG_DEDUPLICATION_DISABLED"] = "true"
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NotPowertools())
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    config = parse_args(argv)
    logging.getLogger().setLevel(config.log_level)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers only set a flag: no KeyboardInterrupt can tear through moto or a handler mid-call.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    runtime = LocalRuntime(config)
    try:
        runtime.start(should_stop=stop.is_set)
        print(f"{AWS_ENDPOINT_MESSAGE} {runtime.aws_endpoint}", flush=True)
        print(f"{READY_MESSAGE} {runtime.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    except StartupInterrupted:
        log.info("stopped during startup")
    except STARTUP_ERRORS as exc:
        log.error("%s", exc)
        log.debug("startup failed", exc_info=exc)
        return 1
    finally:
        runtime.stop()
    return 0
