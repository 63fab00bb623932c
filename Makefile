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

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/grpc_api.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/rebalance.py
	$(BIN)/python bench/outbox_latency.py
	$(BIN)/python bench/expiry.py
	$(BIN)/python bench/as_of.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) .inventory-dev .pytest_cache .mypy_cache .ruff_cache
