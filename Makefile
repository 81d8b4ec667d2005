# Two commands matter: `make demo` and `make test`. Everything else is a step of theirs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GOTOOLCHAIN := local
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test test-unit test-integration lint bench e2e scale tools system-deps venv crds clean

demo: $(STAMP)
	$(VENV)/bin/goodput simulate --demo --plot out/demo.png

test: lint test-unit test-integration

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration" tests/unit

# Debian's prometheus and openssl, installed only when missing (CI starts bare); fails
# at once with the real error, stops only the service the package started, and checks
# the Go version if a tool still has to be built (hack/system-deps.sh).
system-deps:
	./hack/system-deps.sh

tools:
	./hack/build-tools.sh all

test-integration: $(STAMP) system-deps tools
	$(PY) -m pytest -q -m integration --durations=25 tests/integration

# Regenerate the CRD from the models, and the chart's copy of it.
crds: $(STAMP)
	$(VENV)/bin/goodput crd -o crds/goodput.dev_goodputpolicies.yaml
	cp crds/goodput.dev_goodputpolicies.yaml helm/goodput-operator/files/

# The closed loop on its own control plane (issue 14): the fleet emulator on a 10-minute
# compressed ServeGen day, the operator as a process with the chart's RBAC; prints a
# summary, writes out/e2e.json and out/e2e.png (docs/e2e.md), and the run as
# docs/bench/e2e.md (+ .png), which make bench folds into BENCHMARKS.md. About 12 minutes.
E2E_ARGS ?= --minutes 10
e2e: $(STAMP) system-deps tools
	$(PY) -m tests.harness.e2e $(E2E_ARGS) --out out --bench-md docs/bench/e2e.md

# One operator process, 200 policies, each with its own emulated fleet, on its own control
# plane (issue 14, "Scale"): tick latency, CPU, memory, API requests/s, Prometheus queries
# per tick; prints them, writes out/scale.json (figures: docs/bench/scale.md). ~10 minutes.
SCALE_ARGS ?= --policies 200 --interval 15 --warmup 60 --duration 300
scale: $(STAMP) system-deps tools
	$(PY) -m tests.harness.scale $(SCALE_ARGS) --out out

bench: $(STAMP)
	$(VENV)/bin/goodput bench --out BENCHMARKS.md --changes docs/bench/changes.md \
	  $(foreach f,$(wildcard docs/bench/e2e.md docs/bench/scale.md),--live $(f))

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
