# CallBridge developer commands. Everything installs itself into .venv (project) and
# .tools/sam (AWS SAM CLI, kept apart because it pins its own boto3/pydantic/click).
PY ?= python3
VENV := .venv
SAMVENV := .tools/sam
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)/functions:$(CURDIR)/tools
# The SAM CLI reports usage to AWS unless told not to: a build or a test run must not phone home.
export SAM_CLI_TELEMETRY := 0

.PHONY: run test test-fast lint bench bench-cost build validate clean browser

$(VENV)/.installed: requirements-dev.txt requirements-translator.txt layers/deps/requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	$(VENV)/bin/python -m pip install -q --no-deps -r requirements-translator.txt
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

$(SAMVENV)/.installed: requirements-sam.txt
	$(PY) -m venv $(SAMVENV)
	$(SAMVENV)/bin/python -m pip install -q --upgrade pip
	$(SAMVENV)/bin/python -m pip install -q -r requirements-sam.txt
	touch $@

## run: start CallBridge locally (embedded AWS emulation + HTTP gateway). ARGS="--port 3000 --accounts DIR"
run: $(VENV)/.installed
	$(VENV)/bin/python -m callbridge_local $(ARGS)

## browser: Debian's Chromium for the operator console's browser tests (tests/e2e/test_console_e2e.py).
## Once per machine: nothing to do when it is there. Installed from Debian's packages because a test
## tool's download of its own browser does not work on a closed network; root (CI) installs it.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; \
	else echo "The console's browser tests need Debian's Chromium: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi

## test: lint, types, architecture, sam validate --lint, sam build, all the tests; the time of each stage
test: $(VENV)/.installed $(SAMVENV)/.installed browser
	PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/$(SAMVENV)/bin:$$PATH" bash tools/test.sh

## test-fast: the edit-test loop: architecture contracts, unit + contract + architecture tests
test-fast: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash tools/test.sh --fast

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

validate: $(SAMVENV)/.installed
	$(SAMVENV)/bin/sam validate --lint

build: $(SAMVENV)/.installed
	PATH="$(CURDIR)/$(SAMVENV)/bin:$$PATH" $(SAMVENV)/bin/sam build

## bench: cold start, warm and gateway latency figures (prints a table, writes bench/results/*.json)
bench: $(VENV)/.installed
	$(VENV)/bin/python bench/benchmark.py $(ARGS)

## bench-cost: cost per 1,000 and 1,000,000 calls by AWS line item, and hang-up → CRM latency (bench/cost.py)
bench-cost: $(VENV)/.installed
	$(VENV)/bin/python bench/cost.py $(ARGS)

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
