# BE-MCP: `make run` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
NODE22_DIR := $(CACHE)/node22
CONF_DIR := $(CACHE)/conformance
CONF_ALPHA_DIR := $(CACHE)/conformance-alpha
EVERYTHING_DIR := $(CACHE)/server-everything
EXT_TASKS_DIR := $(CACHE)/ext-tasks
NODE22 := $(NODE22_DIR)/node_modules/.bin/node
CONF_VERSION := 0.1.16
CONF_ALPHA_VERSION := 0.2.0-alpha.12
EVERYTHING_VERSION := 2026.8.31
EXT_TASKS_VERSION := 0.2.2
MCP_CLIENT_VERSION := 2.4.0
export PATH := $(CURDIR)/$(NODE22_DIR)/node_modules/.bin:$(PATH)

.PHONY: setup run serve test lint typecheck unit conformance conformance-alpha bench bench-overhead deps-debian browser servers clean

setup: $(VENV)/.installed $(NODE22) $(CONF_DIR)/.installed $(CONF_ALPHA_DIR)/.installed $(EVERYTHING_DIR)/.installed $(EXT_TASKS_DIR)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# The conformance suite needs Node 22; the machine's Node may be older.
$(NODE22):
	mkdir -p $(NODE22_DIR)
	cd $(NODE22_DIR) && ( test -f package.json || npm init -y >/dev/null ) && npm install --no-audit --no-fund node@22 >/dev/null
	$(NODE22) --version

$(CONF_DIR)/.installed: $(NODE22)
	mkdir -p $(CONF_DIR)
	cd $(CONF_DIR) && ( test -f package.json || npm init -y >/dev/null ) && npm install --no-audit --no-fund @modelcontextprotocol/conformance@$(CONF_VERSION) >/dev/null
	touch $@

$(CONF_ALPHA_DIR)/.installed: $(NODE22)
	mkdir -p $(CONF_ALPHA_DIR)
	cd $(CONF_ALPHA_DIR) && ( test -f package.json || npm init -y >/dev/null ) && npm install --no-audit --no-fund @modelcontextprotocol/conformance@$(CONF_ALPHA_VERSION) >/dev/null
	touch $@

# A server no one here wrote, for the stress tester's end-to-end tests (tests/stress/test_e2e.py).
$(EVERYTHING_DIR)/.installed: $(NODE22)
	mkdir -p $(EVERYTHING_DIR)
	cd $(EVERYTHING_DIR) && ( test -f package.json || npm init -y >/dev/null ) && npm install --no-audit --no-fund @modelcontextprotocol/server-everything@$(EVERYTHING_VERSION) >/dev/null
	touch $@

# The official MCP tasks requester and the SDK v2 client it drives (Streamable HTTP built in), for
# tests/interop/test_ext_tasks.py.
$(EXT_TASKS_DIR)/.installed: $(NODE22)
	mkdir -p $(EXT_TASKS_DIR)
	cd $(EXT_TASKS_DIR) && ( test -f package.json || npm init -y >/dev/null ) && npm install --no-audit --no-fund @modelcontextprotocol/ext-tasks@$(EXT_TASKS_VERSION) @modelcontextprotocol/client@$(MCP_CLIENT_VERSION) >/dev/null
	touch $@

# The main job: a quick stress run against the embedded BE-MCP server; prints where the reports are.
run: $(VENV)/.installed
	$(BIN)/bemcp stress --profile quick

serve: $(VENV)/.installed
	$(BIN)/bemcp serve --transport http --host 127.0.0.1 --port 8000

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: setup browser servers
	REQUIRE_CONFORMANCE=1 $(BIN)/pytest -q --durations=15

test: setup lint typecheck unit

conformance-alpha: setup
	$(BIN)/python -m tests.conformance.run_alpha

# Servers the tests start themselves on free loopback ports: redis-server backs the shared task store.
servers:
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)

# wrk drives the HTTP benchmarks; valgrind (callgrind) counts instructions in bench_instructions.py.
deps-debian:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null)

# Headless Chromium renders report.html in the tests.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

bench: setup deps-debian
	$(BIN)/python benchmarks/bench_http.py

# What the protections cost: instructions per call, then on/off throughput over HTTP and stdio.
bench-overhead: setup deps-debian
	$(BIN)/python benchmarks/bench_instructions.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_overhead.py --transport stdio

clean:
	rm -rf $(VENV) $(CACHE) .mypy_cache .ruff_cache .pytest_cache .hypothesis
