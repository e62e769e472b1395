"""Issue 25's second pass on the real stack (Redis, SeaweedFS, a worker, gunicorn with one process),
with tokens for two users, an admin and Prometheus: results stream through the API without being
held in memory, the metrics take a metrics or admin token and keep their Redis gauges a few seconds,
a user sees no one's workers, job errors keep their internals from owners, a 413 closes its
connection, a Host not configured is refused, and an address that sends wrong tokens is throttled."""

import json
import os
import socket
import time

import psutil
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from api.auth import token_digest
from shared.storage import Storage, job_key
from tests.service_helpers import SMALL_JOB, running_stack

TOKENS = {"alice": ("user", "alice-token"), "bob": ("user", "bob-token"), "boss": ("admin", "boss-token"),
          "prometheus": ("metrics", "prometheus-token")}  # fmt: skip
WRONG_TOKENS_A_MINUTE = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("security")
    tokens_file = workdir / "tokens"
    lines = [f"{name} {scope} {token_digest(token)}\n" for name, (scope, token) in TOKENS.items()]
    tokens_file.write_text("".join(lines))
    env = {"FILTERVIZ_API_TOKENS_FILE": str(tokens_file), "FILTERVIZ_API_WORKERS": "1",
           "FILTERVIZ_FAILED_AUTH_LIMIT": f"{WRONG_TOKENS_A_MINUTE} per minute"}  # fmt: skip
    with running_stack(workdir, ["sec"], chunk_size=8, env=env) as running:
        yield running


def call(stack, who: str | None, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKENS[who][1]}"} if who else {}
    return requests.request(method, f"{stack.api_url}{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def alice_job(stack) -> dict:
    job = call(stack, "alice", "POST", "/v1/jobs", json=SMALL_JOB).json()
    for _ in range(1200):
        job = call(stack, "alice", "GET", f"/v1/jobs/{job['id']}").json()
        if job["status"] in {"succeeded", "failed", "canceled"}:
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    return job


def api_worker_rss(stack) -> int:
    """Resident memory of the one gunicorn worker process."""
    (worker,) = psutil.Process(stack.processes["api"].pid).children()
    return worker.memory_info().rss


def test_a_big_grid_streams_through_the_api_without_being_held_in_memory(stack, alice_job):
    size = 96 * 2**20
    big = os.urandom(size)
    Storage(stack.settings).put(job_key(alice_job["id"], "grid.png"), big, "image/png")
    del big
    before, peak = api_worker_rss(stack), 0
    with call(stack, "alice", "GET", f"/v1/jobs/{alice_job['id']}/grid.png", stream=True) as response:
        assert response.status_code == 200 and int(response.headers["Content-Length"]) == size
        received = 0
        for piece in response.iter_content(2**20):
            received += len(piece)
            peak = max(peak, api_worker_rss(stack))
            time.sleep(0.002)  # a slowish client: the API must not read ahead into memory
    assert received == size
    assert peak - before < 24 * 2**20, f"the API process grew by {(peak - before) / 2**20:.0f} MiB"


def scrape(response: requests.Response) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}  # fmt: skip


def test_metrics_take_a_metrics_or_admin_token(stack):
    for path in ("/metrics", "/metrics/backlog"):
        assert call(stack, None, "GET", path).status_code == 401, path
        refused = call(stack, "alice", "GET", path)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "metrics_not_allowed"), path
        assert call(stack, "prometheus", "GET", path).status_code == 200, path
        assert call(stack, "boss", "GET", path).status_code == 200, path
    # A metrics token reads the metrics and nothing else.
    refused = call(stack, "prometheus", "GET", "/v1/jobs")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "api_not_allowed")


def test_the_redis_gauges_are_read_once_per_period_not_once_per_scrape(stack):
    def queued() -> float:
        samples = scrape(call(stack, "prometheus", "GET", "/metrics"))
        return samples[("filterviz_jobs", frozenset({("status", "canceled")}))]

    first = queued()
    made = call(stack, "bob", "POST", "/v1/jobs", json={**SMALL_JOB, "seed": 91}).json()
    assert call(stack, "bob", "DELETE", f"/v1/jobs/{made['id']}").json()["status"] == "canceled"
    assert queued() == first  # within the period: what the last read found
    time.sleep(5.5)
    assert queued() == first + 1


def test_a_user_sees_no_ones_worker_names_pids_or_jobs(stack):
    mine = call(stack, "alice", "GET", "/v1/workers").json()
    assert mine["count"] == 1
    (worker,) = mine["workers"]
    assert set(worker) == {"weights", "device", "started_at", "seen_at", "busy"}
    (full,) = call(stack, "boss", "GET", "/v1/workers").json()["workers"]
    assert {"name", "pid", "unit"} <= set(full) and full["name"].startswith("sec:")


def test_a_failed_jobs_error_keeps_its_internals_from_its_owner(stack, alice_job):
    raw = "chunk 0 could not use storage: Could not connect to the endpoint URL: http://10.1.2.3:8333/filterviz"
    record = f"filterviz:job:{alice_job['id']}"
    redis.Redis.from_url(stack.env["REDIS_URL"]).hset(
        record, mapping={"status": "failed", "error": json.dumps({"code": "storage_unavailable", "message": raw})}
    )
    owner = call(stack, "alice", "GET", f"/v1/jobs/{alice_job['id']}").json()["error"]
    assert owner["code"] == "storage_unavailable" and "submit the job again" in owner["message"]
    assert "10.1.2.3" not in json.dumps(owner) and "detail" not in owner
    listed = call(stack, "alice", "GET", "/v1/jobs").json()["jobs"]
    assert "10.1.2.3" not in json.dumps(listed)
    admin = call(stack, "boss", "GET", f"/v1/jobs/{alice_job['id']}").json()["error"]
    assert admin["detail"] == raw  # the operator's view keeps the failure's own words


def test_a_413_says_connection_close_and_closes(stack):
    host, port = stack.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-token\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n" + b"[" * 1000
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk  # ends when the server closes
    head = answer.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 413") and "connection: close" in head


def test_a_host_not_configured_is_refused_by_the_running_api(stack):
    response = requests.get(f"{stack.api_url}/healthz", headers={"Host": "rebound.attacker.test"}, timeout=10)
    assert response.status_code == 400
    assert requests.get(f"{stack.api_url}/healthz", headers={"Host": "localhost:8000"}, timeout=10).status_code == 200


def test_an_address_that_sends_wrong_tokens_is_throttled_a_right_token_included(stack):
    try:
        for n in range(WRONG_TOKENS_A_MINUTE):
            wrong = requests.get(f"{stack.api_url}/v1/jobs", headers={"Authorization": f"Bearer guess-{n}"}, timeout=10)
            assert wrong.status_code == 401
        throttled = requests.get(f"{stack.api_url}/v1/jobs", headers={"Authorization": "Bearer guess-x"}, timeout=10)
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
        # A right guess now gets the same answer as a wrong one: the answers tell a guesser nothing.
        assert call(stack, "alice", "GET", "/v1/jobs").status_code == 429
        # Without a token nothing is guessed: the page's first call still gets its 401.
        assert call(stack, None, "GET", "/v1/jobs").status_code == 401
        assert requests.get(f"{stack.api_url}/healthz", timeout=10).status_code == 200
    finally:  # the other tests of this module come from the same address
        client = redis.Redis.from_url(stack.env["REDIS_URL"])
        for key in client.scan_iter("LIMITS:*failed-auth*"):
            client.delete(key)
    assert call(stack, "alice", "GET", "/v1/jobs").status_code == 200
