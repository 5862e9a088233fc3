# Each target creates .venv and installs the project with its dev extras when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

## Train and register a model on the embedded `shapes` dataset (ARGS="--preset seed --json" ...)
train: $(STAMP)
	$(BIN)/multitask train $(ARGS)

## The whole test suite (fast: tiny datasets, Prefect under its test harness)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Benchmarks P0-P5 (about 10 minutes on 2 cores): bench/results/*.json and docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .multitask .pytest_cache
