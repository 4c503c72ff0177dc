"""CallBridge benchmark: cold start, warm handler time and gateway latency, each side by side with a
floor (bench/floor.py, a bare boto3 handler doing one GetItem) measured in the same run.

    make bench                        # full run (2-3 min on 2 cores)
    make bench ARGS=--quick           # smoke-sized run (~20 s)
    python bench/benchmark.py --help

Figures are only comparable within a run: the moto emulator, the machine and its load all move
them, while they move the floor alike. That is why every figure is reported as a ratio to the floor,
and a cold start's ratio is paired: each round starts every function and the floor once, each
function's time is divided by the floor's of the same round, and the median of those ratios is
reported, over two passes or more (each with its own warm-up round), so that one noisy stretch of
the machine moves neither a pass nor the verdict much.

The goals: every function API Gateway invokes starts within 1.3× the floor. The contact path (and
the Cloud PBX address that also answers `contact`) within 1.1× the floor given the same GC pause our
AWS clients take while they load (bench/floor.py `gc_paused_handler`), for a known caller in the form
the PBX sends (docs/protocols/cloudpbx.md: 79101234567). The same caller written with the Russian
trunk prefix (89101234567), which only phonenumbers' metadata can read, is measured beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORKER = BENCH / "worker.py"
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
ACCOUNTS = ROOT / "accounts"
# What Lambda puts on sys.path for our functions (/opt/python of the layers, then the task root).
HANDLER_PATHS = (ROOT / "layers" / "common" / "python", ROOT / "functions")
# What this script itself imports from the repository (the local runtime, tests.support).
SCRIPT_PATHS = (*HANDLER_PATHS, ROOT / "tools", ROOT)

FLOOR = "FloorFunction"
FLOOR_HANDLER = "floor.handler"
FLOOR_GC = "FloorFunction, GC paused"
FLOOR_GC_HANDLER = "floor.gc_paused_handler"
FLOORS = (FLOOR, FLOOR_GC)
FLOOR_PATH = "/bench/floor"
CONTACT = "ContactFunction"
CONTACT_PATH = "/v1/demo/cloudpbx/contact"
# Every HTTP function's cold start, against the floor.
GOAL_RATIO = 1.3
# Answering a ringing phone, against the floor with the same GC pause; both addresses the PBX may
# use for it are held to it.
CONTACT_GOAL_RATIO = 1.1
CONTACT_GOAL_FUNCTIONS = (CONTACT, "CloudPbxFunction")
# The one sample event per function when it has several: the contact case is the latency-critical one.
EVENT_FILES = {CONTACT: "ContactFunction.known-caller.json", "CloudPbxFunction": "CloudPbxFunction.contact.json"}
IMPORT_PROFILE_FUNCTION = CONTACT
# Measured beside the goal functions, held to no goal: (name, function, sample event).
EXTRA_TARGETS = (("ContactFunction, trunk prefix", CONTACT, "ContactFunction.known-caller-trunk-prefix.json"),)
FIRST_PARTY = ("callbridge",)

# (cold runs per pass, warm calls, gateway requests): the full run, and --quick.
FULL = (15, 10_000, 1_000)
QUICK = (3, 500, 100)
# Cold start passes: a median over one pass would hang on one stretch of the machine's load.
PASSES = 2


class BenchmarkError(RuntimeError):
    """A measurement could not be taken, or measured something other than the intended path."""


# -- statistics --------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in 0..100."""
    if not samples:
        raise BenchmarkError("no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50": round(percentile(samples_ms, 50), 3),
        "p90": round(percentile(samples_ms, 90), 3),
        "p99": round(percentile(samples_ms, 99), 3),
        "min": round(min(samples_ms), 3),
        "max": round(max(samples_ms), 3),
        "mean": round(sum(samples_ms) / len(samples_ms), 3),
    }


def ratio(value: float, floor: float) -> float:
    return round(value / floor, 3) if floor > 0 else math.inf


# -- targets and events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    handler: str  # module.function, as in the template
    event: dict[str, Any]
    event_file: str
    # A contact answer must name the caller: a 200 without it would mean we timed a miss or an error
    # path, which is quicker than the real one and would flatter the figures.
    expects_contact: bool

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def function(self) -> str:
        return self.handler.rpartition(".")[2]


def floor_event() -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"GET {FLOOR_PATH}",
        "rawPath": FLOOR_PATH,
        "rawQueryString": "",
        "headers": {"host": "api.example.com"},
        "requestContext": {
            "http": {"method": "GET", "path": FLOOR_PATH, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10"},
            "requestId": "bench",
            "routeKey": f"GET {FLOOR_PATH}",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def _event_file(logical_id: str) -> Path:
    if logical_id in EVENT_FILES:
        return EVENTS / EVENT_FILES[logical_id]
    candidates = sorted(EVENTS.glob(f"{logical_id}*.json"))
    if not candidates:
        raise BenchmarkError(f"no sample event for {logical_id} in {EVENTS} ({logical_id}*.json)")
    exact = EVENTS / f"{logical_id}.json"
    return exact if exact in candidates else candidates[0]


def http_targets() -> list[Target]:
    """Every function of template.yaml that API Gateway invokes, then the floor."""
    from callbridge_local.template import load_template

    targets = [
        Target(FLOOR, FLOOR_HANDLER, floor_event(), "(built in)", expects_contact=False),
        Target(FLOOR_GC, FLOOR_GC_HANDLER, floor_event(), "(built in)", expects_contact=False),
    ]
    for spec in load_template(TEMPLATE).functions.values():
        if not spec.http_events:
            continue
        path = _event_file(spec.logical_id)
        event = json.loads(path.read_text(encoding="utf-8"))
        targets.append(
            Target(
                spec.logical_id,
                spec.handler,
                event,
                path.name,
                expects_contact="cmd=contact" in str(event.get("body") or ""),
            )
        )
    handlers = {t.name: t.handler for t in targets}
    for name, function, file_name in EXTRA_TARGETS:
        event = json.loads((EVENTS / file_name).read_text(encoding="utf-8"))
        targets.append(Target(name, handlers[function], event, file_name, expects_contact=True))
    return targets


def with_fresh_call_id(event: dict[str, Any], run: int) -> dict[str, Any]:
    """A repeated history or event is recognised and skipped; every cold run gets a call of its own
    so that each one walks the full write path, not the cheaper duplicate path."""
    body = event.get("body")
    if not isinstance(body, str) or "callid=" not in body:
        return event
    fields = [(k, f"bench-{os.getpid()}-{run}-{v}" if k == "callid" else v) for k, v in parse_qsl(body)]
    return {**event, "body": urlencode(fields)}


def check_response(target: Target, response: Any, where: str) -> None:
    status = response.get("statusCode") if isinstance(response, dict) else None
    # The webhooks must take their real path (200). Other functions' samples may rightly answer a
    # redirect or a 4xx here (a recording not fetched in the benchmark's store): still a full cold
    # start through the handler, as long as it is not a failure.
    webhook = "/cloudpbx" in str(target.event.get("rawPath", "")) or target.name in FLOORS
    if not isinstance(status, int) or (status != 200 if webhook else status >= 500):
        raise BenchmarkError(f"{target.name} ({where}) answered {status}: {response!r:.300}")
    if target.expects_contact and "contact_name" not in str(response.get("body")):
        raise BenchmarkError(f"{target.name} ({where}) found no contact: {response!r:.300}")


# -- subprocess workers ------------------------------------------------------------------------


@dataclass
class Workers:
    """Starts bench/worker.py in fresh interpreters with the environment of a deployed function."""

    env: dict[str, str]
    scratch: Path
    _count: int = 0

    def run(
        self, args: Sequence[str], payload: Any, *, timeout: float, python_flags: Sequence[str] = ()
    ) -> tuple[dict[str, Any], str, float]:
        """(result, stderr, wall ms of the whole process including interpreter start-up)."""
        self._count += 1
        result_file = self.scratch / f"result-{self._count}.json"
        command = [sys.executable, *python_flags, str(WORKER), *args, str(result_file)]
        started = time.perf_counter()
        # subprocess.run kills the worker if anything (Ctrl-C included) interrupts the wait.
        done = subprocess.run(
            command,
            input=json.dumps(payload),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall_ms = (time.perf_counter() - started) * 1000
        if done.returncode != 0 or not result_file.exists():
            output = (done.stderr + done.stdout).strip()[-2000:]
            raise BenchmarkError(f"worker {' '.join(args)} exited {done.returncode}:\n{output}")
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        result_file.unlink()
        return result, done.stderr, wall_ms


def worker_env(base: dict[str, str], scratch: Path) -> dict[str, str]:
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in HANDLER_PATHS)
    # A Lambda has no ~/.aws; a developer's config (SSO profiles, many sections) would cost parse
    # time here that the function never pays.
    env["AWS_CONFIG_FILE"] = str(scratch / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "no-aws-credentials")
    # Without .pyc files every run would compile our sources again, which Lambda does not do either.
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP", "PYTHONINSPECT"):
        env.pop(name, None)
    return env


# -- 1. cold start -----------------------------------------------------------------------------


@dataclass
class ColdSamples:
    total_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    call_ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)
    max_rss_kb: list[int] = field(default_factory=list)


def cold_once(workers: Workers, target: Target, run: int) -> tuple[dict[str, Any], float]:
    payload = with_fresh_call_id(target.event, run)
    result, _, wall_ms = workers.run(["cold", target.module, target.function], payload, timeout=60)
    check_response(target, result.get("response"), f"cold run {run}")
    return result, wall_ms


def measure_cold(
    workers: Workers, targets: Sequence[Target], runs: int, passes: int, progress: Progress
) -> dict[str, ColdSamples]:
    """`passes` × `runs` rounds; sample i of every target is of round i, which pairs it with the
    floors' sample i."""
    samples = {t.name: ColdSamples() for t in targets}
    for number in range(passes):
        # One discarded round first: it writes the .pyc files and fills the page cache, as the
        # first of many Lambda cold starts on a warm host would find them.
        for target in targets:
            cold_once(workers, target, run=0)
        measure_pass(workers, targets, runs, number * runs, samples)
        progress.step(f"cold start pass {number + 1}/{passes}: {runs} rounds")
    return samples


def measure_pass(
    workers: Workers, targets: Sequence[Target], runs: int, first_run: int, samples: dict[str, ColdSamples]
) -> None:
    # Round-robin rather than one function after another, so that a burst of load on the machine
    # spreads over all functions instead of landing on one of them; each round starts with
    # another target, so that none is always the first (or the last) after the previous round.
    for run in range(first_run + 1, first_run + runs + 1):
        shift = run % len(targets)
        for target in [*targets[shift:], *targets[:shift]]:
            result, wall_ms = cold_once(workers, target, run)
            entry = samples[target.name]
            entry.total_ms.append(float(result["total_ms"]))
            entry.import_ms.append(float(result["import_ms"]))
            entry.call_ms.append(float(result["call_ms"]))
            entry.process_ms.append(wall_ms)
            entry.max_rss_kb.append(int(result.get("max_rss_kb", 0)))


# -- import profile ----------------------------------------------------------------------------


@dataclass(eq=False)
class ImportNode:
    module: str
    depth: int
    self_us: int
    cumulative_us: int
    phase: str
    parent: ImportNode | None = field(default=None, repr=False)
    children: list[ImportNode] = field(default_factory=list, repr=False)

    def subtree(self) -> Iterator[ImportNode]:
        yield self
        for child in self.children:
            yield from child.subtree()


def parse_importtime(stderr: str) -> list[ImportNode]:
    """`-X importtime` lines of the measured phases, with each import's importer. The output is in
    post-order (an import is printed when it finishes, after everything it imported), indented by
    depth, so a line's children are the deeper lines printed just before it."""
    from bench.worker import CALL_END, CALL_START, IMPORT_START

    phase: str | None = None
    nodes: list[ImportNode] = []
    pending: list[ImportNode] = []
    for line in stderr.splitlines():
        if line in (IMPORT_START, CALL_START, CALL_END):
            phase = {IMPORT_START: "import", CALL_START: "first call", CALL_END: None}[line]
            pending.clear()
            continue
        if phase is None or not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2].lstrip(" ")
        node = ImportNode(
            module=name,
            depth=(len(parts[2]) - len(name) - 1) // 2,
            self_us=int(parts[0]),
            cumulative_us=int(parts[1]),
            phase=phase,
        )
        while pending and pending[-1].depth > node.depth:
            child = pending.pop()
            child.parent = node
            node.children.insert(0, child)
        pending.append(node)
        nodes.append(node)
    return nodes


def _first_party(module: str, handler_module: str) -> bool:
    return module == handler_module or module.split(".")[0] in FIRST_PARTY


def profile_imports(workers: Workers, target: Target) -> list[ImportNode]:
    _, stderr, _ = workers.run(
        ["cold", target.module, target.function],
        with_fresh_call_id(target.event, -1),
        timeout=60,
        python_flags=["-X", "importtime"],
    )
    nodes = parse_importtime(stderr)
    if not nodes:
        raise BenchmarkError(f"-X importtime printed nothing for the measured phases of {target.name}")
    return nodes


def import_profile(workers: Workers, target: Target, floor: Target, top: int = 10) -> dict[str, Any]:
    nodes = profile_imports(workers, target)
    floor_modules = {n.module for n in profile_imports(workers, floor)}

    def row(node: ImportNode, cumulative_us: int | None = None) -> dict[str, Any]:
        # A root of the import phase is the handler module the Lambda runtime imports; a root of the
        # first call is imported lazily by code running inside the handler.
        importer = node.parent.module if node.parent else ("(runtime)" if node.phase == "import" else "(handler code)")
        return {
            "module": node.module,
            "cumulative_ms": round((node.cumulative_us if cumulative_us is None else cumulative_us) / 1000, 2),
            "self_ms": round(node.self_us / 1000, 2),
            "imported_by": importer,
            "phase": node.phase,
        }

    def ms(us: float) -> float:
        return round(us / 1000, 2)

    # What the floor does not load at all is what our path adds: each place where our code pulls in
    # such a module, with what that import drags along and the floor does not (boto3 itself, say,
    # is no extra cost even when our import of boto3.dynamodb.types is what loads it first).
    extra = {n for n in nodes if n.module not in floor_modules}
    entry_points = [
        n
        for n in extra
        if not _first_party(n.module, target.module)
        and (n.parent is None or n.parent not in extra or _first_party(n.parent.module, target.module))
    ]
    extra_cost = {n: sum(d.self_us for d in n.subtree() if d in extra) for n in entry_points}
    own = [n for n in nodes if _first_party(n.module, target.module)]
    by_package: dict[str, int] = {}
    for node in nodes:
        package = node.module.split(".")[0]
        by_package[package] = by_package.get(package, 0) + node.self_us
    roots = [n for n in nodes if n.parent is None]
    return {
        "function": target.name,
        "note": "times under -X importtime, which inflates them; compare them with each other only",
        "import_phase_ms": ms(sum(n.cumulative_us for n in roots if n.phase == "import")),
        "first_call_phase_ms": ms(sum(n.cumulative_us for n in roots if n.phase == "first call")),
        "top_cumulative": [row(n) for n in sorted(nodes, key=lambda n: n.cumulative_us, reverse=True)[:top]],
        "beyond_floor_ms": ms(sum(extra_cost.values()) + sum(n.self_us for n in own)),
        "own_modules_self_ms": ms(sum(n.self_us for n in own)),
        "beyond_floor": [
            row(n, extra_cost[n]) for n in sorted(entry_points, key=lambda n: extra_cost[n], reverse=True)[:top]
        ],
        "self_ms_by_package": {
            k: ms(v) for k, v in sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
        },
    }


# -- 2. warm, in process -----------------------------------------------------------------------


def measure_warm(workers: Workers, contact: Target, floor: Target, calls: int, warmup: int) -> dict[str, list[float]]:
    job = {
        "targets": [{"name": t.name, "handler": t.handler, "event": t.event} for t in (contact, floor)],
        "calls": calls,
        "warmup": warmup,
    }
    # Generous: a GetItem against moto takes a few ms, a loaded CI machine may take ten times that.
    result, _, _ = workers.run(["warm"], job, timeout=60 + calls * 0.05)
    for target in (contact, floor):
        check_response(target, result["last_response"].get(target.name), "warm")
    return {name: [us / 1000 for us in samples] for name, samples in result["samples_us"].items()}


# -- 3. through the local gateway --------------------------------------------------------------


def write_bench_template(directory: Path) -> Path:
    """template.yaml plus the floor as a function of its own behind the same HTTP API, so that the
    gateway serves both alike. Written as JSON (a valid template too) to a scratch directory; the
    relative CodeUri/ContentUri become absolute since the runtime resolves them against the
    template's own directory."""
    from callbridge_local import cfn_yaml

    raw = cfn_yaml.load(TEMPLATE)
    for resource in raw["Resources"].values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = str((ROOT / properties[key]).resolve())
    raw["Resources"][FLOOR] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Description": "Benchmark floor: a bare boto3 handler doing one GetItem.",
            "CodeUri": str(BENCH),
            "Handler": FLOOR_HANDLER,
            "Policies": [{"DynamoDBReadPolicy": {"TableName": {"Ref": "AccountsTable"}}}],
            "Events": {
                "Floor": {
                    "Type": "HttpApi",
                    "Properties": {"ApiId": {"Ref": "HttpApi"}, "Path": FLOOR_PATH, "Method": "GET"},
                }
            },
        },
    }
    path = directory / "template.bench.json"
    path.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return path


def measure_gateway(template: Path, requests: int, warmup: int, progress: Progress) -> dict[str, list[float]]:
    import httpx
    from tests.support import form, seed_contact

    from callbridge_local.testing import running_bridge

    body = form(**seed_contact())
    headers = {"content-type": "application/x-www-form-urlencoded"}

    with (
        running_bridge(ACCOUNTS, template=template) as bridge,
        httpx.Client(base_url=bridge.base_url, timeout=10) as client,
    ):
        progress.step(f"bridge up at {bridge.base_url}")

        def contact() -> httpx.Response:
            return client.post(CONTACT_PATH, content=body, headers=headers)

        def floor() -> httpx.Response:
            return client.get(FLOOR_PATH)

        calls: list[tuple[str, Callable[[], httpx.Response], str]] = [
            (CONTACT, contact, "contact_name"),
            (FLOOR, floor, '"found": true'),
        ]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in calls}
        try:
            for _ in range(warmup):
                for name, call, expected in calls:
                    response = call()
                    if response.status_code != 200 or expected not in response.text:
                        raise BenchmarkError(
                            f"{name} through the gateway answered {response.status_code} {response.text[:300]!r}\n"
                            f"bridge output:\n{bridge.output()[-2000:]}"
                        )
            clock = time.perf_counter_ns
            for _ in range(requests):
                for name, call, _ in calls:
                    started = clock()
                    response = call()
                    samples[name].append((clock() - started) / 1e6)
                    if response.status_code != 200:
                        raise BenchmarkError(f"{name} through the gateway answered {response.status_code}")
        except httpx.TransportError as error:
            code = bridge.process.poll()
            state = "is still running" if code is None else f"exited with code {code}"
            raise BenchmarkError(
                f"request to the local runtime failed ({error!r}); it {state}. Its output:\n{bridge.output()[-2000:]}"
            ) from error
    return samples


# -- report ------------------------------------------------------------------------------------


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        print(f"  [{self.elapsed():6.1f} s] {text}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    import boto3
    import botocore
    import moto

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "moto": moto.__version__,
    }


def paired_ratios(values: Sequence[float], floor: Sequence[float]) -> list[float]:
    """Each round's value over the floor's of the same round."""
    if len(values) != len(floor):
        raise BenchmarkError(f"{len(values)} samples cannot be paired with the floor's {len(floor)}")
    return [value / base for value, base in zip(values, floor, strict=True) if base > 0]


def paired_summary(values: Sequence[float], floor: Sequence[float], passes: int) -> dict[str, Any]:
    """The median of the paired ratios over every pass, and each pass's own median (how far the
    passes agree says how much the machine's load moved the figure)."""
    ratios = paired_ratios(values, floor)
    size = len(ratios) // passes
    return {
        "median": round(percentile(ratios, 50), 3),
        "per_pass": [round(percentile(ratios[i * size : (i + 1) * size], 50), 3) for i in range(passes)],
        "n": len(ratios),
    }


def cold_report(samples: dict[str, ColdSamples], passes: int) -> dict[str, Any]:
    floor, floor_gc = samples[FLOOR], samples[FLOOR_GC]
    report: dict[str, Any] = {}
    for name, entry in samples.items():
        to_floor = paired_summary(entry.total_ms, floor.total_ms, passes)
        report[name] = {
            "total_ms": summary(entry.total_ms),
            "import_ms": summary(entry.import_ms),
            "first_call_ms": summary(entry.call_ms),
            "process_wall_ms": summary(entry.process_ms),
            # The whole interpreter's peak resident memory after the first call: the floor of the
            # MemorySize the function can be given (bench/cost.py chooses it).
            "max_rss_mb": round(max(entry.max_rss_kb, default=0) / 1024, 1),
            # Medians of paired ratios (module docstring): to the floor, and to the floor that
            # pauses the GC as our AWS clients do.
            "ratio_to_floor": to_floor["median"],
            "paired_ratio_to_floor": to_floor,
            "paired_ratio_to_gc_paused_floor": paired_summary(entry.total_ms, floor_gc.total_ms, passes),
            "import_ratio_to_floor": paired_summary(entry.import_ms, floor.import_ms, passes)["median"],
            "first_call_ratio_to_floor": paired_summary(entry.call_ms, floor.call_ms, passes)["median"],
        }
    return report


def pair_report(samples: dict[str, list[float]]) -> dict[str, Any]:
    report: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    report["ratio_p50"] = ratio(report[CONTACT]["p50"], report[FLOOR]["p50"])
    report["ratio_p99"] = ratio(report[CONTACT]["p99"], report[FLOOR]["p99"])
    return report


def goals(cold: dict[str, Any], http_functions: Sequence[str]) -> dict[str, Any]:
    """Per function, each goal it is held to: (against which floor, the goal, the median paired
    ratio, met)."""
    found: dict[str, Any] = {}
    for name in http_functions:
        checks = [("floor", GOAL_RATIO, cold[name]["paired_ratio_to_floor"]["median"])]
        if name in CONTACT_GOAL_FUNCTIONS:
            checks.append(
                ("GC-paused floor", CONTACT_GOAL_RATIO, cold[name]["paired_ratio_to_gc_paused_floor"]["median"])
            )
        found[name] = [
            {"against": against, "goal": goal, "ratio": value, "met": value <= goal} for against, goal, value in checks
        ]
    return found


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _paired(ratio: dict[str, Any]) -> str:
    return f"{ratio['median']:.2f} [{' '.join(f'{r:.2f}' for r in ratio['per_pass'])}]"


def render(results: dict[str, Any]) -> str:
    cold = results["cold_start"]
    config = results["config"]

    def goal_text(name: str) -> str:
        return ", ".join(
            f"≤ {g['goal']:.1f}× {'floor' if g['against'] == 'floor' else 'GC floor'} {'met' if g['met'] else 'NOT met'}"
            for g in results["goals"].get(name, [])
        )

    lines = [
        f"Cold start: median of paired ratios (each round's time over the floor's of the same round) over "
        f"{config['cold_passes']} passes of {config['cold_runs']} rounds; each pass's median in brackets.",
    ]
    rows: list[tuple[str, ...]] = [("function", "", "p50 ms", "× floor [per pass]", "× GC-paused floor", "goal")]
    for name, entry in cold.items():
        rows.append(
            (
                name,
                "cold start",
                f"{entry['total_ms']['p50']:.1f}",
                _paired(entry["paired_ratio_to_floor"]),
                _paired(entry["paired_ratio_to_gc_paused_floor"]),
                goal_text(name),
            )
        )
        for label, key, ratio_key in (
            ("  import", "import_ms", "import_ratio_to_floor"),
            ("  first call", "first_call_ms", "first_call_ratio_to_floor"),
        ):
            rows.append(("", label, f"{entry[key]['p50']:.1f}", f"{entry[ratio_key]:.2f}", "", ""))
    lines += _table(rows)
    rows = [("function", "metric", "p50 ms", "p99 ms", "× floor (p50)")]
    for section, label in (("warm", "warm, in process"), ("gateway", "via local gateway")):
        pair = results[section]
        for name in (CONTACT, FLOOR):
            stats = pair[name]
            shown_ratio = f"{pair['ratio_p50']:.2f}" if name == CONTACT else "1.00"
            rows.append((name, label, f"{stats['p50']:.2f}", f"{stats['p99']:.2f}", shown_ratio))
    lines += ["", *_table(rows)]

    lines += [
        "",
        "Peak resident memory after a cold start (MB): "
        + ", ".join(f"{name} {entry['max_rss_mb']:.0f}" for name, entry in cold.items()),
    ]
    profile = results["import_profile"]
    lines += [
        "",
        f"Import profile of {profile['function']} (-X importtime, inflated; import phase "
        f"{profile['import_phase_ms']:.0f} ms, imported during the first call {profile['first_call_phase_ms']:.0f} ms):",
        "  top cumulative:",
    ]
    lines += [
        f"    {r['cumulative_ms']:7.1f} ms  {r['module']:<45} ← {r['imported_by']} ({r['phase']})"
        for r in profile["top_cumulative"]
    ]
    lines.append(
        f"  modules the floor never loads: {profile['beyond_floor_ms']:.0f} ms "
        f"(our own modules' self time {profile['own_modules_self_ms']:.0f} ms, plus what they pull in:)"
    )
    lines += [
        f"    {r['cumulative_ms']:7.1f} ms  {r['module']:<45} ← {r['imported_by']} ({r['phase']})"
        for r in profile["beyond_floor"]
    ]
    lines.append(
        "  self time by package: " + ", ".join(f"{k} {v:.0f} ms" for k, v in profile["self_ms_by_package"].items())
    )
    lines.append("")
    overhead, in_process = results["gateway"]["overhead_ms"], results["warm"][FLOOR]["p50"]
    if overhead > 5 * in_process:
        lines.append(
            f"Note: the gateway itself adds {overhead:.1f} ms per request ({in_process:.1f} ms for the floor in process), "
            "so the gateway ratio says more about the gateway than about our code."
        )
        if 36 <= overhead <= 48:
            lines.append(
                "  A constant ~40 ms is the signature of Nagle's algorithm meeting delayed ACKs: a server that writes "
                "headers and body separately without TCP_NODELAY."
            )
        lines.append("")
    missed = [(name, g) for name, checks in results["goals"].items() for g in checks if not g["met"]]
    lines.append(
        f"Goals: every HTTP function ≤ {GOAL_RATIO:.1f}× the floor; {' and '.join(CONTACT_GOAL_FUNCTIONS)} "
        f"≤ {CONTACT_GOAL_RATIO:.1f}× the GC-paused floor: "
        + (
            "all MET"
            if not missed
            else "NOT MET by " + ", ".join(f"{n} ({g['ratio']:.2f}× {g['against']})" for n, g in missed)
        )
    )
    return "\n".join(lines)


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    path = directory / f"benchmark-{results['timestamp']}.json"
    path.write_text(text, encoding="utf-8")
    (directory / "latest.json").write_text(text, encoding="utf-8")
    return path


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke-sized run: {} cold runs, {} warm calls, {} gateway requests".format(*QUICK),
    )
    parser.add_argument("--cold-runs", type=int, help=f"fresh processes per function and pass (default {FULL[0]})")
    parser.add_argument(
        "--cold-passes",
        type=int,
        default=PASSES,
        help=f"cold start passes, each with its own warm-up round (default and least {PASSES})",
    )
    parser.add_argument(
        "--warm-calls", type=int, help=f"timed in-process calls of contact and floor (default {FULL[1]})"
    )
    parser.add_argument("--gateway-requests", type=int, help=f"timed HTTP requests per route (default {FULL[2]})")
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH / "results", help="where the JSON goes (default bench/results)"
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, default in zip(("cold_runs", "warm_calls", "gateway_requests"), defaults, strict=True):
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        elif value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.cold_passes < PASSES:
        parser.error(f"--cold-passes must be at least {PASSES}: one pass is one stretch of the machine's load")
    return args


@contextlib.contextmanager
def provisioned_cloud(scratch: Path) -> Iterator[dict[str, str]]:
    """moto with the template's tables and the demo account: the environment a deployed function
    sees, for the worker processes. This process's own environment is pointed at it too, since
    applying the accounts goes through the same AWS clients the handlers use."""
    from callbridge.features.admin import apply_accounts_dir
    from callbridge_local.emulator import point_environ_at
    from callbridge_local.testing import moto_server, provisioned

    saved = dict(os.environ)
    try:
        with moto_server() as endpoint:
            point_environ_at(endpoint)
            os.environ.update(provisioned(endpoint, TEMPLATE))
            apply_accounts_dir(ACCOUNTS, "http://127.0.0.1")
            yield worker_env(dict(os.environ), scratch)
    finally:
        # The bridge started later inherits this environment; it must not point at a stopped moto.
        os.environ.clear()
        os.environ.update(saved)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt: a BaseException, so that no `except Exception` on the
    way swallows it."""


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The default SIGTERM action ends the process without running finally blocks, which would leave
    # the bridge subprocess behind; an exception unwinds the context managers that stop it.
    raise Terminated


def run(args: argparse.Namespace) -> dict[str, Any]:
    for path in reversed(SCRIPT_PATHS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    progress = Progress()
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": machine_info(),
        "config": {
            "cold_runs": args.cold_runs,
            "cold_passes": args.cold_passes,
            "warm_calls": args.warm_calls,
            "gateway_requests": args.gateway_requests,
            "quick": args.quick,
        },
    }
    machine = results["machine"]
    print(
        f"CallBridge benchmark: Python {machine['python']} ({machine['implementation']}), "
        f"{machine['cpu_count']} CPUs, load {machine['load_average']}, {machine['platform']}",
        flush=True,
    )
    targets = {t.name: t for t in http_targets()}
    results["events"] = {name: t.event_file for name, t in targets.items()}
    warm_warmup = max(10, min(200, args.warm_calls // 10))
    gateway_warmup = max(10, min(50, args.gateway_requests // 10))

    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        with provisioned_cloud(scratch) as env:
            progress.step("moto provisioned, demo account applied")
            workers = Workers(env, scratch)
            cold = measure_cold(workers, list(targets.values()), args.cold_runs, args.cold_passes, progress)
            results["cold_start"] = cold_report(cold, args.cold_passes)
            extras = {name for name, _, _ in EXTRA_TARGETS}
            http_functions = [name for name in targets if name not in FLOORS and name not in extras]
            results["goals"] = goals(results["cold_start"], http_functions)
            results["import_profile"] = import_profile(workers, targets[IMPORT_PROFILE_FUNCTION], targets[FLOOR])
            progress.step("import profile taken")
            warm = measure_warm(workers, targets[CONTACT], targets[FLOOR], args.warm_calls, warm_warmup)
            results["warm"] = pair_report(warm)
            progress.step(f"{args.warm_calls} warm calls each")
        # The in-process moto above is stopped by now: the bridge brings its own, and two emulators
        # on two cores would only add noise.
        template = write_bench_template(scratch)
        gateway = measure_gateway(template, args.gateway_requests, gateway_warmup, progress)
        results["gateway"] = pair_report(gateway)
        results["gateway"]["overhead_ms"] = round(results["gateway"][FLOOR]["p50"] - results["warm"][FLOOR]["p50"], 3)
        progress.step(f"{args.gateway_requests} gateway requests each")
    results["duration_s"] = round(progress.elapsed(), 1)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started has been stopped", file=sys.stderr)
        return 130
    except Terminated:
        print("\nterminated; everything started has been stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print()
    print(render(results))
    path = write_results(results, args.results_dir)
    print(f"\nwritten {path} and {path.parent / 'latest.json'} ({results['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
