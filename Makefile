# Two commands on a fresh machine: `make run` and `make test`. Both build .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit proto bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make run ARGS="--postgres-port 25432 --stack-only"`: see `inventory dev --help`
run: $(STAMP)
	$(BIN)/inventory dev $(ARGS)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

proto: $(STAMP)
	$(BIN)/python -m service.api.codegen

# every bench, about 12 minutes on 2 cores: JSON lines to bench/results/latest.jsonl, then
# docs/bench.md and its plots (docs/bench/*.png)
bench: $(STAMP)
	$(BIN)/python bench/collect.py --out bench/results/latest.jsonl
	$(BIN)/python bench/report.py bench/results/latest.jsonl --out docs/bench.md

clean:
	rm -rf $(VENV) .inventory-dev .pytest_cache .mypy_cache .ruff_cache
