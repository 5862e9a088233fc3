# Each target creates .venv and installs the project with its dev extras when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=
# Test processes: each runs whole files, so module fixtures stay in one process (0: all in this one).
TEST_WORKERS ?= 2
# Files in the order tests/ordering.py gives them (heaviest first), not xdist's (by test count).
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: install train lint test test-fast bench quality docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools  # a new venv's setuptools has known advisories
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

## Train and register a model on the embedded `shapes` dataset (ARGS="--preset seed --json" ...)
train: $(STAMP)
	$(BIN)/multitask train $(ARGS)

## Style, types, layers, wording and known vulnerabilities: ruff, mypy on the library, import-linter
## contracts (pyproject.toml), tools/wording.py (tracked text speaks of the project only),
## tools/audit.py (pip-audit and tools/advisories.toml on the installed packages)
lint: $(STAMP)
	$(BIN)/ruff check src cli tasks flows tests bench deployments tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/wording.py
	$(BIN)/python tools/audit.py

## The whole test suite (tiny datasets, Prefect under its test harness), TEST_WORKERS processes
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

## The unit tier: no training, no flow run (under a minute)
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

## docs/configuration.md from the config models' field descriptions (a test fails when it is out of date)
docs: $(STAMP)
	$(BIN)/python tools/config_doc.py

## Benchmarks P0-P9: bench/results/<host>-<date>.json and docs/benchmarks.md (hours on 2 cores, most of it P9's
## nine trainings and P6's twelve; ARGS="--p6-from FILE" takes P6 from an earlier run, ARGS="--only P6" measures one figure alone)
bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

## The default recipe on shapes, the cluttered set and glyphs on photographs (long): docs/quality.md
quality: $(STAMP)
	$(BIN)/python bench/quality.py --seeds 3 --doc

clean:
	rm -rf $(VENV) .multitask .pytest_cache
