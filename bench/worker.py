"""Runs inside the fresh interpreter the benchmark starts per measurement; not imported by it.

    python bench/worker.py cold MODULE FUNCTION RESULT_FILE     (event JSON on stdin)
    python bench/worker.py warm RESULT_FILE                      (job JSON on stdin)

Only modules the interpreter has loaded anyway (sys, time) and json (which the Lambda runtime loads
before any handler) are imported up front - not even typing or importlib: anything more would be
paid before the clock starts and then found for free by the handler's own imports, flattering the
cold start.
Results go to a file rather than stdout because handlers may log to stdout.
"""

from __future__ import annotations

import json
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Written to stderr around the measured phases so that `-X importtime` output (also stderr) can be
# split into what the import costs and what the first invocation imports lazily.
IMPORT_START = "bench-worker: import start"
CALL_START = "bench-worker: call start"
CALL_END = "bench-worker: call end"


def _mark(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _import(module_name: str) -> Any:
    __import__(module_name)
    return sys.modules[module_name]


def _write(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)


def _peak_rss_kb() -> int:
    """This process's peak resident memory, read after the clock: what the function needs of its
    MemorySize after a cold start. VmHWM, not getrusage's ru_maxrss, which Linux carries over from
    the parent (the benchmark, with moto in it) through fork and exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cold(module_name: str, function_name: str, result_file: str) -> None:
    event = json.load(sys.stdin)
    _mark(IMPORT_START)
    started = time.perf_counter()
    module = _import(module_name)
    imported = time.perf_counter()
    _mark(CALL_START)
    handler = getattr(module, function_name)
    called = time.perf_counter()
    response = handler(event, None)
    returned = time.perf_counter()
    _mark(CALL_END)
    _write(
        result_file,
        {
            "max_rss_kb": _peak_rss_kb(),
            "import_ms": (imported - started) * 1000,
            "call_ms": (returned - called) * 1000,
            "total_ms": (returned - started) * 1000,
            "response": response,
        },
    )


def warm(result_file: str) -> None:
    """Calls each target in turn (a, b, a, b, ...), so that whatever the machine or the emulator
    does meanwhile hits every target alike, and records each call's time in microseconds."""
    job = json.load(sys.stdin)
    targets: list[tuple[str, Any, dict[str, Any]]] = []
    for target in job["targets"]:
        module_name, _, function_name = str(target["handler"]).rpartition(".")
        handler = getattr(_import(module_name), function_name)
        targets.append((str(target["name"]), handler, target["event"]))
    last: dict[str, Any] = {}
    for _ in range(int(job["warmup"])):
        for name, handler, event in targets:
            last[name] = handler(event, None)
    samples: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    clock = time.perf_counter_ns
    for _ in range(int(job["calls"])):
        for name, handler, event in targets:
            started = clock()
            last[name] = handler(event, None)
            samples[name].append((clock() - started) / 1000)
    _write(result_file, {"samples_us": samples, "last_response": last})


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "cold":
        cold(argv[2], argv[3], argv[4])
        return 0
    if len(argv) == 3 and argv[1] == "warm":
        warm(argv[2])
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
