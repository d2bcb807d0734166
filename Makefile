# smsmon developer commands. `make help` lists them.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export SMSMON_PYTHON := $(abspath $(BIN)/python)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

$(BIN)/smsmon: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/smsmon ## Create .venv and install smsmon with dev tools

broker: ## Fetch the pinned Apache Kafka jars from Maven Central (cached)
	scripts/kafka-local.sh fetch

lint: install ## ruff (lint + format check), mypy --strict and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

deps: ## The Debian packages the tests need (installed when run as root, else listed)
	@if [ "$$(id -u)" -eq 0 ]; then scripts/test-deps.sh install; else scripts/test-deps.sh check; fi

test: install deps broker ## All tests: unit, integration, then the (long) fault-injection tests
	$(BIN)/pytest -m "not integration" -q
	$(BIN)/pytest -m "integration and not reliability" -q
	$(BIN)/pytest -m reliability -q

test-integration: install deps broker ## Integration tests without the long fault-injection ones
	$(BIN)/pytest -m "integration and not reliability" -q

test-reliability: install deps broker ## Fault-injection tests (kills, rebalances, broker restart, SASL)
	$(BIN)/pytest -m reliability -q

test-unit: install ## Unit tests only (no broker)
	$(BIN)/pytest -m "not integration" -q

demo: install broker ## Local broker + worker + sample traffic, live terminal view; Ctrl-C stops all
	$(BIN)/python -m smsmon.tools.demo

bench: install broker ## Throughput benchmark on a local broker (docs/performance.md); BENCH_ARGS="--quick"
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

.PHONY: bench

schemas: install ## Re-export JSON Schemas of the wire contract into docs/schemas
	$(BIN)/smsmon schemas --out docs/schemas

clean: ## Remove local state (venv kept)
	rm -rf data .demo .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install broker deps lint test test-integration test-reliability test-unit demo schemas clean
