#!/usr/bin/env bash
# The whole gate, in the order that fails fastest. Run through `make test`, which installs the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
# The SAM CLI reports usage to AWS unless told not to: a test run must not phone home (also when
# this script is run without make).
export SAM_CLI_TELEMETRY=0

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy"
mypy

echo "== lint-imports (the architecture contracts in pyproject.toml, docs/architecture.md)"
PYTHONPATH=layers/common/python lint-imports --no-cache

echo "== sam validate --lint"
sam validate --lint

echo "== sam build"
sam build --build-dir .aws-sam/build >/tmp/callbridge-sam-build.log 2>&1 || { cat /tmp/callbridge-sam-build.log; exit 1; }
echo "Build Succeeded"

echo "== pytest"
# Test files run on both cores (pytest-xdist), a file on one worker so that a module's shared local
# runtime starts once; every server a test starts binds port 0, so workers never collide.
pytest -q -n "${CALLBRIDGE_TEST_WORKERS:-2}" --dist loadfile --durations=30 "$@"
