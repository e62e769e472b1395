"""Shared fixtures: one seeded-random VGG16 per test session (tests never need ImageNet weights); and
the tiers every test falls in (`make test-fast` runs the first):

- unit: no servers but a throwaway Valkey, no network: spec, cost, methods, lifecycle, scheduler;
- engine: VGG16 in TensorFlow or JAX in this process or a subprocess, no servers;
- stack: Redis, an S3 server, workers or the API, started by the test on free ports;
- browser: the web page in headless Chromium, on a stack;
- compose: the images built and `docker compose up` run on podman (tests/compose).

A test's tier is its own marker when it has one, else what its fixtures start: `stack` (or a server
fixture of its module), `browser`, `engine`/`loaded_model`. So a new test that takes `stack` is in
the stack tier without a word.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import redis

from devstack import local

# Servers' ports come from below the kernel's ephemeral range (32768 up), a block per test process
# (pytest-xdist's gw0, gw1, ...): see devstack/local.py PORT_RANGE.
_PROCESS = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
local.PORT_RANGE = range(16000 + 4000 * _PROCESS, 20000 + 4000 * _PROCESS)

TEST_WEIGHTS = "random:3"
SERVICE_CHUNK_SIZE = 4
TIERS = ("unit", "engine", "stack", "browser", "compose")
# Fixtures that put a test in a tier, checked in this order (the first that matches wins).
TIER_FIXTURES = {
    "browser": {"browser"},
    "stack": {"stack", "service_stack", "seaweedfs", "api", "sliced"},
    "engine": {"engine", "loaded_model", "runs"},
}


def tier_of(item: pytest.Item) -> str:
    """The tier of a collected test: its own marker, else its folder's, else its fixtures'."""
    own = [tier for tier in TIERS if item.get_closest_marker(tier)]
    if own:
        return own[0]
    if "compose" in Path(item.path).parts:
        return "compose"
    fixtures = set(getattr(item, "fixturenames", ()))
    return next((tier for tier, names in TIER_FIXTURES.items() if fixtures & names), "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))
    # The compose tests first: the longest file (image builds), so that under `make test`'s two
    # processes (pytest-xdist, a file at a time) the other process runs every other file beside it.
    items.sort(key=lambda item: not item.get_closest_marker("compose"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A throwaway Valkey for the unit tier (the lifecycle, the scheduler): no broker, no worker."""
    from devstack.local import LocalStack

    stack = LocalStack(tmp_path_factory.mktemp("valkey"))
    try:
        stack.start_redis()
        yield redis.Redis.from_url(stack.env["REDIS_URL"])
    finally:
        stack.stop_all(at_once=True)


@pytest.fixture
def jobs(redis_server):
    """A job store on an emptied `redis_server`."""
    from shared.jobs import JobStore

    redis_server.flushall()
    return JobStore(redis_server, 3600)


@pytest.fixture(scope="session")
def loaded_model():
    from worker.model import load_network

    return load_network(TEST_WEIGHTS)


@pytest.fixture(scope="session")
def service_stack(tmp_path_factory):
    """One stack for the modules that submit jobs and read them back without breaking anything:
    Redis, S3, the API and two workers (alpha, beta), chunks of SERVICE_CHUNK_SIZE filters."""
    from tests.service_helpers import running_stack

    with running_stack(tmp_path_factory.mktemp("service"), ["alpha", "beta"], SERVICE_CHUNK_SIZE) as stack:
        yield stack


@pytest.fixture(scope="session")
def engine(loaded_model):
    from worker.engine import AscentEngine

    return AscentEngine(loaded_model.network)
