# Prometheus — every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := build/stamps

.DEFAULT_GOAL := help
.PHONY: help setup bytecode build test test-pocketic test-fast lint bench demo demo-attest wheel clean

help:
	@echo "make setup   - create .venv, install pinned Python deps, the pinned Motoko toolchain, docker.io, chromium and redis-server (idempotent)"
	@echo "make build   - build every canister in canister_src/ with the reproducible recipe, print sha256"
	@echo "make test    - set up, then run the whole test suite (integration tests on the embedded replica and through PocketIC's API)"
	@echo "make test-pocketic - only the integration tests through PocketIC's API (our prometheus-pocket-ic)"
	@echo "make lint    - ruff + mypy"
	@echo "make bench   - replica benchmarks (figures recorded in docs/benchmarks.md)"
	@echo "make demo    - set up, then the whole lifecycle as a user types it (prometheus + prometheus-verifier commands)"
	@echo "make demo-attest - agent attestation for MCP: issuer + JWKS, redis-server, two MCP servers, an agent, attacks"
	@echo "make wheel   - the sdist and a wheel built from it, in build/dist (docs/install.md)"

$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,pocketic]'
	@touch $@

$(STAMPS)/toolchain: toolchain/package.json toolchain/package-lock.json
	@mkdir -p $(STAMPS)
	cd toolchain && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMPS)/jsclients: tests/js/package.json tests/js/package-lock.json
	@mkdir -p $(STAMPS)
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The verifier's sandbox needs a Docker daemon: with $$DOCKER_HOST set we use that one; otherwise install
# docker.io (root) and let tests, the demo and the benchmark start their own private dockerd.
$(STAMPS)/docker:
	@mkdir -p $(STAMPS)
	@if [ -z "$$DOCKER_HOST" ] && ! command -v dockerd >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "docker.io is missing: run 'sudo apt-get install docker.io' or set DOCKER_HOST"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; \
	fi
	@touch $@

# The store's web view is tested in a real browser: Debian's chromium, driven by Playwright (no browser download).
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run 'sudo apt-get install chromium'"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

# Agent attestation's shared replay cache is tested (and demonstrated) against a real Redis: Debian's redis-server,
# started by the tests and the demo on a private port (never as a system service).
$(STAMPS)/redis:
	@mkdir -p $(STAMPS)
	@if ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "redis-server is missing: run 'sudo apt-get install redis-server'"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	@touch $@

# The project's modules compiled ahead, as pip does for an installed package: an editable install has none, and
# where PYTHONDONTWRITEBYTECODE is set (these machines) every process, each of the ~350 commands the tests run
# among them, compiled them from source again (about 80 ms a process). Only what changed is compiled again.
bytecode: $(STAMPS)/python
	@$(PY) -m compileall -q -j 0 ic_replica prometheus_attest prometheus_build prometheus_cli prometheus_sdk \
	  prometheus_store verifier_bot testkit

setup: $(STAMPS)/python $(STAMPS)/toolchain $(STAMPS)/jsclients $(STAMPS)/docker $(STAMPS)/chromium $(STAMPS)/redis bytecode

build: setup
	$(PY) -m prometheus_build --src canister_src --out build/canisters

# Every test, the backend-parametrized integration tests on both backends: the embedded replica, and PocketIC's
# client and REST API as served by our prometheus-pocket-ic (the code path that targets real PocketIC). One run
# balances both over the two workers (9:21 instead of 8:31 + 2:10 in two runs, docs/benchmarks.md).
POCKET_IC := POCKET_IC_BIN=$(abspath $(VENV))/bin/prometheus-pocket-ic

test: setup
	$(POCKET_IC) $(PY) -m pytest -q -n 2 --dist loadfile

# Only the PocketIC variants of the backend-parametrized tests.
test-pocketic: setup
	$(POCKET_IC) $(PY) -m pytest -q -n 2 --dist loadfile -k pocketic

test-fast: setup
	$(PY) -m pytest -q -x

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup
	$(PY) bench/replica_bench.py

demo: setup
	$(PY) scripts/demo.py

demo-attest: setup
	$(PY) examples/attest/demo.py

wheel: setup
	$(PY) -m build --no-isolation --outdir build/dist .

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
