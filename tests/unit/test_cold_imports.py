"""What a cold start of each function behind the HTTP API loads before its first request: none of
the libraries that cost tens of milliseconds each (bench/benchmark.py measures them against a bare
boto3 function). Each handler module is imported in a fresh interpreter, as Lambda imports it, and
the loaded modules are listed: a check of what is imported, not a timing, so it cannot flake.

The requests that need one load it when they run: pydantic with an account's settings or the body
of POST /calls, phonenumbers with a number to parse, httpx with a request to a PBX or CRM,
Powertools' logger with the first log line."""

from __future__ import annotations

import functools
import json

import pytest

from callbridge_local.template import load_template
from tests.cold import ROOT, run_fresh

HEAVY = ("pydantic", "pydantic_core", "phonenumbers", "aws_lambda_powertools", "httpx", "httpcore")

SCRIPT = """
import json, sys
__import__(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@functools.cache
def _http_handler_modules() -> dict[str, str]:
    """Function logical id → handler module, for every function an HTTP API route invokes."""
    functions = load_template(ROOT / "template.yaml").functions.values()
    return {f.logical_id: f.handler.rpartition(".")[0] for f in functions if f.http_events}


def _loaded_after_import(module: str) -> set[str]:
    done = run_fresh(["-c", SCRIPT, module])
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_http_functions_are_the_ones_the_benchmark_holds_to_its_goal() -> None:
    # A new HTTP function is covered below without editing this file; this only keeps the list
    # from being empty (a template the loader misread would make every check below pass).
    assert {"ContactFunction", "HistoryFunction", "CallHistoryFunction", "MakeCallFunction"} <= set(
        _http_handler_modules()
    )


@pytest.mark.parametrize("function", sorted(_http_handler_modules()))
def test_a_cold_start_loads_no_heavy_library_before_the_first_request(function: str) -> None:
    loaded = _loaded_after_import(_http_handler_modules()[function])
    assert _http_handler_modules()[function] in loaded
    assert sorted(loaded & set(HEAVY)) == []


def _import_depths(module: str) -> dict[str, int]:
    """How deep under the handler module each module was first imported (the handler: 0)."""
    done = run_fresh(["-X", "importtime", "-c", f"import {module}"])
    depths: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            name = parts[2].lstrip(" ")
            depths[name] = (len(parts[2]) - len(name) - 1) // 2
    assert depths.get(module) == 0, f"{module} was not imported at the top: {sorted(depths)[:20]}"
    return depths


@pytest.mark.parametrize("function", ["ContactFunction", "CloudPbxFunction", "HistoryFunction", "EventFunction"])
def test_the_contact_path_imports_boto3_from_the_handler_as_the_floor_does(function: str) -> None:
    # CPython's frame stack grows and shrinks by chunks; boto3's import, thousands of nested calls,
    # made about a thousand more page faults when it ran several modules deep (bench/floor.py
    # imports it from the handler itself, and the contact path is measured against that).
    assert _import_depths(_http_handler_modules()[function])["boto3"] == 1
