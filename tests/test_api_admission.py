"""Admission, outages and browser hardening on the real stack: Redis, SeaweedFS and gunicorn,
started here on free ports. No worker runs: every job stays queued (that is what admission
counts), and each test cancels the jobs it made. Clients are told apart by their address, so
each test speaks from its own loopback address (127.0.0.x)."""

import json

import pytest
import requests
import urllib3

from devstack.local import S3_READER_KEY, S3_READER_SECRET, LocalStack, _tool, free_port, http_ok, wait_until
from tests.service_helpers import running_stack

PER_CLIENT, IN_ALL, RATE = 2, 4, 6
TINY_JOB = {"layer": "block1_conv1", "filters": [0], "image_size": 32, "steps": 2}
ENV = {
    "FILTERVIZ_MAX_ACTIVE_JOBS_PER_CLIENT": str(PER_CLIENT),
    "FILTERVIZ_MAX_ACTIVE_JOBS": str(IN_ALL),
    "FILTERVIZ_SUBMIT_RATE_LIMIT": f"{RATE} per minute",
    "FILTERVIZ_UPLOAD_RATE_LIMIT": "2 per minute",
    # Raised above its built-in default: a job using it must still load back (stored specs).
    "FILTERVIZ_MAX_STEPS": "1000",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("admission"), [], chunk_size=4, env=ENV) as stack:
        yield stack


class Client:
    """A client speaking from one loopback address; remembers the jobs it made, to cancel them."""

    def __init__(self, api: str, address: str) -> None:
        self.api, self.made = api, []
        self._pool = urllib3.PoolManager(source_address=(address, 0), retries=False, timeout=10)

    def request(self, method: str, path: str, body: object = None, content_type: str = "application/json"):
        data = None if body is None else body if isinstance(body, str) else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        response = self._pool.request(method, f"{self.api}{path}", body=data, headers=headers)
        return response.status, response.headers, json.loads(response.data) if response.data else None

    def submit(self, job: dict = TINY_JOB):
        status, headers, body = self.request("POST", "/v1/jobs", job)
        if status == 202:
            self.made.append(body["id"])
        return status, headers, body

    def cancel_all(self) -> None:
        for job_id in self.made:
            assert self.request("DELETE", f"/v1/jobs/{job_id}")[0] == 200
        self.made.clear()


@pytest.fixture
def clients(stack):
    made: list[Client] = []

    def client(address: str) -> Client:
        made.append(Client(stack.api_url, address))
        return made[-1]

    yield client
    for each in made:
        each.cancel_all()


def test_a_client_past_its_unfinished_jobs_gets_429_until_one_finishes(clients):
    alice = clients("127.0.0.10")
    assert [alice.submit()[0] for _ in range(PER_CLIENT)] == [202] * PER_CLIENT
    status, headers, body = alice.submit()
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert body["error"]["code"] == "too_many_jobs" and "127.0.0.10 has 2 unfinished jobs" in body["error"]["message"]
    assert alice.request("DELETE", f"/v1/jobs/{alice.made.pop()}")[0] == 200
    assert alice.submit()[0] == 202


def test_the_service_past_its_unfinished_jobs_gets_429_for_everyone(clients):
    for address in ("127.0.0.20", "127.0.0.21"):
        client = clients(address)
        assert [client.submit()[0] for _ in range(PER_CLIENT)] == [202] * PER_CLIENT
    status, headers, body = clients("127.0.0.22").submit()
    assert status == 429 and headers["Retry-After"]
    assert "the service has 4 unfinished jobs" in body["error"]["message"]


def test_submissions_are_rate_limited_per_client_even_invalid_ones(clients):
    mallory, bob = clients("127.0.0.30"), clients("127.0.0.31")
    assert [mallory.submit({"steps": "many"})[0] for _ in range(RATE)] == [422] * RATE
    status, headers, body = mallory.submit()
    assert status == 429 and body["error"]["code"] == "too_many_requests"
    assert 0 < int(headers["Retry-After"]) <= 61  # the rest of the minute's window
    assert bob.submit()[0] == 202  # another client is not slowed down


def test_uploads_have_their_own_rate_limit(clients):
    carol = clients("127.0.0.32")
    junk = ("--x\r\nContent-Disposition: form-data; name=\"architecture\"\r\n\r\nvgg16\r\n--x\r\n"
            'Content-Disposition: form-data; name="file"; filename="w.h5"\r\n\r\nnot weights\r\n--x--\r\n')  # fmt: skip
    form = "multipart/form-data; boundary=x"
    assert [carol.request("POST", "/v1/models", junk, form)[0] for _ in range(2)] == [422, 422]
    status, headers, body = carol.request("POST", "/v1/models", junk, form)
    assert status == 429 and "too many POST /v1/models" in body["error"]["message"] and int(headers["Retry-After"]) > 0
    assert carol.submit()[0] == 202  # submissions are counted apart


def test_a_job_within_a_raised_limit_is_served_after_it_is_stored(clients):
    carol = clients("127.0.0.40")
    status, _, job = carol.submit({**TINY_JOB, "steps": 300})
    assert status == 202 and job["params"]["steps"] == 300
    status, _, again = carol.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and again["params"]["steps"] == 300
    status, _, listed = carol.request("GET", "/v1/jobs")
    assert status == 200 and job["id"] in [j["id"] for j in listed["jobs"]]


def test_cancel_refuses_a_form_post_and_takes_delete_or_json(clients):
    dave = clients("127.0.0.50")
    first, second = dave.submit()[2]["id"], dave.submit()[2]["id"]
    dave.made.clear()
    status, _, _ = dave.request("POST", f"/v1/jobs/{first}/cancel", "x=1", "application/x-www-form-urlencoded")
    assert status == 415
    assert dave.request("GET", f"/v1/jobs/{first}")[2]["status"] == "queued"
    assert dave.request("POST", f"/v1/jobs/{first}/cancel", {})[2]["status"] == "canceled"
    assert dave.request("DELETE", f"/v1/jobs/{second}")[2]["status"] == "canceled"


def test_pages_and_api_answers_carry_security_headers(stack):
    for path in ("/", "/v1/models", "/v1/jobs/0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c"):
        headers = requests.get(f"{stack.api_url}{path}", timeout=10).headers
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_s3_that_answers_but_refuses_writes_is_not_ready_and_submissions_get_503(stack, tmp_path):
    """An API whose S3 user may only read: S3 answers, every write is refused."""
    read_only = {
        "S3_ACCESS_KEY_ID": S3_READER_KEY,
        "S3_SECRET_ACCESS_KEY": S3_READER_SECRET,
        "FILTERVIZ_API_WORKERS": "1",
    }
    reader = LocalStack(tmp_path, api_port=free_port(), redis_port=stack.redis_port, s3_port=stack.s3_port,
                        extra_env={**stack.extra_env, **read_only})  # fmt: skip
    command = [_tool("gunicorn"), "-c", "python:api.gunicorn_conf", "--bind", f"127.0.0.1:{reader.api_port}",
               "api.wsgi:app"]  # fmt: skip
    process = reader._spawn("api", command)
    try:
        wait_until(lambda: http_ok(f"{reader.api_url}/healthz"), "read-only api", 60, process)
        ready = requests.get(f"{reader.api_url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert ready.json()["checks"]["redis"] == "ok"
        assert ready.json()["checks"]["s3"].startswith("not writable: AccessDenied")
        refused = requests.post(f"{reader.api_url}/v1/jobs", json=TINY_JOB, timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "storage_unavailable"
    finally:
        reader.stop_all(at_once=True)


def test_while_redis_is_down_the_api_answers_503_with_retry_after_and_recovers(stack):
    api = stack.api_url
    stack.stop("redis")
    try:
        for method, path, body in [("post", "/v1/jobs", TINY_JOB), ("get", "/v1/jobs", None),
                                   ("get", "/v1/jobs/0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c", None),
                                   ("get", "/readyz", None)]:  # fmt: skip
            response = requests.request(method, f"{api}{path}", json=body, timeout=10)
            assert response.status_code == 503, (path, response.text)
            assert int(response.headers["Retry-After"]) > 0
    finally:
        stack.start_redis()
    wait_until(lambda: http_ok(f"{api}/readyz"), "api ready again", 30)
    assert requests.get(f"{api}/v1/jobs", timeout=10).status_code == 200


def test_no_api_process_was_restarted(stack):
    log = (stack.workdir / "api.log").read_text()
    # gunicorn's arbiter names every worker it had to kill; an unhandled error logs a traceback.
    assert "WORKER TIMEOUT" not in log and "was sent SIGKILL" not in log and "Traceback" not in log
