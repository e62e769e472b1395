# filterviz: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up down test bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $@

install: $(INSTALLED) ## create .venv with the API, the worker (TensorFlow CPU) and the test tools

up: $(INSTALLED) ## start Redis, an S3 server, a worker and the API on localhost:8000 (no Docker)
	$(BIN)/python -m devstack up

down: ## stop what `make up` started
	$(BIN)/python -m devstack down

test: $(INSTALLED) ## run the whole test suite (starts its own services)
	$(BIN)/python -m pytest

bench: $(INSTALLED) ## benchmarks: the engine (seed-style vs batched) and the service (overhead, polls, scaling)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/service.py

lint: $(INSTALLED) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(INSTALLED) ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
