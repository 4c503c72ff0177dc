#!/usr/bin/env bash
# The whole gate, in the order that fails fastest. Run through `make test`, which installs the tools.
# `tools/test.sh --fast` (make test-fast) is the edit-test loop: the architecture contracts and the
# unit, contract and architecture tests, without the emulated stacks and runtimes of the rest.
# Any other arguments go to pytest. At the end (also after a failure) the wall time of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."
# The SAM CLI reports usage to AWS unless told not to: a test run must not phone home (also when
# this script is run without make).
export SAM_CLI_TELEMETRY=0

fast=0
if [[ "${1:-}" == "--fast" ]]; then
  fast=1
  shift
fi

# Seconds since START (an $EPOCHREALTIME), to a tenth: bash alone, no bc on a bare machine.
since() {
  local us=$((${EPOCHREALTIME/./} - ${1/./}))
  printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}

stages=()
began=$EPOCHREALTIME
report() {
  local status=$?
  echo
  echo "== wall time per stage"
  local line
  for line in "${stages[@]}"; do
    echo "$line"
  done
  printf '%-14s %7s s%s\n' total "$(since "$began")" "$([[ $status == 0 ]] || echo "  (failed)")"
}
trap report EXIT

# stage NAME TITLE COMMAND...: runs COMMAND under "== TITLE" and records its wall time as NAME.
# (errexit is off inside COMMAND, as in any `cmd || ...`: the functions below chain with &&.)
stage() {
  local name=$1 title=$2 start status=0
  shift 2
  echo "== $title"
  start=$EPOCHREALTIME
  "$@" || status=$?
  stages+=("$(printf '%-14s %7s s' "$name" "$(since "$start")")")
  return "$status"
}

lint() {
  ruff check . && ruff format --check .
}

architecture() {
  # The product's package, its Lambda handlers (functions/, a namespace package from the repository
  # root) and the tooling (tools/): one graph, every contract of pyproject.toml.
  PYTHONPATH=layers/common/python:tools:. lint-imports --no-cache
}

build() {
  sam build --build-dir .aws-sam/build >/tmp/callbridge-sam-build.log 2>&1 || { cat /tmp/callbridge-sam-build.log; return 1; }
  echo "Build Succeeded"
}

# Test files run in parallel (pytest-xdist), a file on one worker so that a module's shared local
# runtime starts once; every server a test starts binds port 0, so workers never collide. The files
# go out in the order tests/conftest.py gives them (the longest first), not xdist's (most tests first).
# Four workers on two cores: the tests mostly wait (queue batching windows, visibility timeouts, paced
# days of calls): three workers kept the two cores only 58 % busy. Measured on 2 cores, the pytest stage:
# -n 3 580 s (116 % CPU), -n 4 420 s (146 % CPU).
tests() {
  pytest -q -n "${CALLBRIDGE_TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder --durations=30 "$@"
}

if ((fast)); then
  stage architecture "lint-imports (the architecture contracts in pyproject.toml, docs/architecture.md)" architecture
  stage tests "pytest: unit, contract, architecture" tests tests/unit tests/contract tests/architecture "$@"
  exit 0
fi

stage lint "ruff" lint
stage types "mypy" mypy
stage architecture "lint-imports (the architecture contracts in pyproject.toml, docs/architecture.md)" architecture
stage template "sam validate --lint" sam validate --lint
stage build "sam build" build
stage tests "pytest" tests "$@"
