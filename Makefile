# kb-ingest — `make test` and `make demo` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install deps lint format schemas test test-fast demo bench dev-up dev-down clean

help:
	@echo "make demo      set up, start a local Kafka + Postgres, ingest a sample corpus, search it"
	@echo "make test      set up and run the whole test suite against real Kafka and Postgres"
	@echo "make install   create .venv with the project and its dev extras"
	@echo "make deps      install Postgres server, kcat and the Kafka jars (cached)"
	@echo "make lint      ruff check, ruff format --check, mypy, schema drift"
	@echo "make bench     run the benchmarks"

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

deps:
	bash deploy/local/install-deps.sh

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy service
	$(BIN)/kb-ingest schemas --check

format: install
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

schemas: install
	$(BIN)/kb-ingest schemas

test: install deps lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

demo: install deps
	$(BIN)/kb-ingest demo

bench: install deps
	$(BIN)/python -m bench

dev-up: install deps
	@$(BIN)/kb-ingest dev up

dev-down: install
	$(BIN)/kb-ingest dev down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
