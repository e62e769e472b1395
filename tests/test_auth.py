"""API tokens on the real stack (Redis, SeaweedFS, a worker, gunicorn), with a tokens file of two
users and an admin: every /v1 call needs a token, a job belongs to its token, another token's job
is a 404 whatever is asked of it, and the admin sees every job."""

import time
from urllib.parse import parse_qs, urlparse

import pytest
import redis
import requests
from pydantic import ValidationError

from api.auth import TokenFileError, Tokens, token_digest
from shared.settings import Settings
from tests.service_helpers import SMALL_JOB, running_stack

TOKENS = {"alice": ("user", "alice-token-1"), "bob": ("user", "bob-token-2"), "boss": ("admin", "boss-token-3")}
# Queued behind the small job on the one worker, long enough to be canceled while unfinished.
SLOW_JOB = {"layer": "block4_conv1", "filters": {"start": 0, "stop": 32}, "image_size": 64, "steps": 50, "seed": 3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    tokens_file = workdir / "tokens"
    lines = [f"{name} {scope} {token_digest(token)}" for name, (scope, token) in TOKENS.items()]
    tokens_file.write_text("# name scope sha256\n" + "\n".join(lines) + "\n")
    with running_stack(workdir, ["auth"], chunk_size=8, env={"FILTERVIZ_API_TOKENS_FILE": str(tokens_file)}) as stack:
        yield stack


class As:
    """Requests to the API with one token (or none)."""

    def __init__(self, api: str, name: str | None, token: str | None = None) -> None:
        self.api = api
        token = token or (TOKENS[name][1] if name else None)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.api}{path}", headers=self.headers, timeout=10, **kwargs)

    def wait_finished(self, job_id: str) -> dict:
        for _ in range(1200):
            job = self("GET", f"/v1/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "canceled"}:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def alice_job(stack) -> dict:
    alice = As(stack.api_url, "alice")
    response = alice("POST", "/v1/jobs", json=SMALL_JOB)
    assert response.status_code == 202, response.text
    job = alice.wait_finished(response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/models", "/v1/workers", "/v1/jobs/0b5bcf36-3a43-4f8e-9d0b-3f3c1b0a1e2d"]
)
def test_no_token_or_a_bad_token_is_401_with_a_challenge(stack, path):
    missing = As(stack.api_url, None)("GET", path)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith('Bearer realm="filterviz"')
    wrong = As(stack.api_url, None, token="alice-token-2")("GET", path)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = requests.get(f"{stack.api_url}{path}", auth=("alice", "alice-token-1"), timeout=10)
    assert basic.status_code == 401


def test_the_page_health_and_api_document_stay_open_and_state_the_scheme(stack):
    for path in ("/", "/healthz", "/readyz", "/docs"):
        assert requests.get(f"{stack.api_url}{path}", timeout=10).status_code == 200, path
    document = requests.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "401" in document["paths"]["/v1/jobs"]["get"]["responses"]


def test_another_tokens_finished_job_is_404_to_read_list_fetch_and_delete(stack, alice_job):
    alice, bob = As(stack.api_url, "alice"), As(stack.api_url, "bob")
    job_id = alice_job["id"]
    paths = [f"/v1/jobs/{job_id}{tail}" for tail in ("", "/grid.png", "/manifest.json", "/thumbnail.png", "/filters")]
    paths.append(f"/v1/jobs/{job_id}/filters/0.png")
    for path in paths:
        assert alice("GET", path).status_code == 200, path
        refused = bob("GET", path)
        # The same answer as for a job that doesn't exist: nothing says it does.
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "job_not_found", path
    assert job_id not in [job["id"] for job in bob("GET", "/v1/jobs").json()["jobs"]]
    assert bob("DELETE", f"/v1/jobs/{job_id}").status_code == 404
    assert bob("POST", f"/v1/jobs/{job_id}/cancel", json={}).status_code == 404
    assert alice("GET", f"/v1/jobs/{job_id}/grid.png").status_code == 200  # still there


def test_another_tokens_unfinished_job_cant_be_canceled(stack, alice_job):
    alice, bob = As(stack.api_url, "alice"), As(stack.api_url, "bob")
    made = bob("POST", "/v1/jobs", json=SLOW_JOB)
    assert made.status_code == 202
    job_id = made.json()["id"]
    assert alice("DELETE", f"/v1/jobs/{job_id}").status_code == 404
    assert alice("POST", f"/v1/jobs/{job_id}/cancel", json={}).status_code == 404
    assert bob("GET", f"/v1/jobs/{job_id}").json()["status"] in {"queued", "running"}
    assert [job["id"] for job in bob("GET", "/v1/jobs").json()["jobs"]] == [job_id]
    canceled = bob("DELETE", f"/v1/jobs/{job_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    # Each token is its own client for admission: its unfinished jobs are counted under its name.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert client.zscore("filterviz:admission:active:token:bob", job_id) is not None


def test_an_admin_sees_and_reads_every_job(stack, alice_job):
    boss = As(stack.api_url, "boss")
    listed = {job["id"] for job in boss("GET", "/v1/jobs?limit=100").json()["jobs"]}
    assert alice_job["id"] in listed and len(listed) >= 2  # alice's and bob's
    assert boss("GET", f"/v1/jobs/{alice_job['id']}/grid.png").status_code == 200


def test_presigned_urls_go_to_the_owner_only_and_last_at_most_an_hour(stack, alice_job):
    url = As(stack.api_url, "alice")("GET", f"/v1/jobs/{alice_job['id']}").json()["links"]["grid_presigned"]
    assert int(parse_qs(urlparse(url).query)["X-Amz-Expires"][0]) <= 3600
    assert requests.get(url, timeout=10).status_code == 200
    assert "grid_presigned" not in As(stack.api_url, "bob")("GET", f"/v1/jobs/{alice_job['id']}").text


def test_only_an_admin_may_raise_a_jobs_priority(stack):
    alice, boss = As(stack.api_url, "alice"), As(stack.api_url, "boss")
    refused = alice("POST", "/v1/jobs", json={**SLOW_JOB, "priority": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "priority_not_allowed"
    out_of_range = alice("POST", "/v1/jobs", json={**SLOW_JOB, "priority": 4})
    assert out_of_range.status_code == 422 and out_of_range.json()["error"]["problems"][0]["field"] == "priority"
    for who, priority in ((boss, 3), (alice, -1)):  # raised by the admin; lowered by anyone
        response = who("POST", "/v1/jobs", json={**SLOW_JOB, "priority": priority})
        assert response.status_code == 202 and response.json()["params"]["priority"] == priority
        assert who("POST", f"/v1/jobs/{response.json()['id']}/cancel", json={}).status_code == 200


def test_presigned_urls_can_not_be_configured_to_last_over_an_hour():
    with pytest.raises(ValidationError, match="less than or equal to 3600"):
        Settings(presign_seconds=3601)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alice user abc", "the hash is not 64"),
        (f"alice root {token_digest('x')}", "is not user, admin or metrics"),
        # A copy-pasted hash under a second name: the later line would silently win.
        (f"alice user {token_digest('x')}\nbob admin {token_digest('x')}", "line 2: this hash is on an earlier line"),
        (f"alice user {token_digest('x')}\nalice admin {token_digest('y')}", "appears twice"),
        (f"alice user {token_digest('x')} extra", "4 fields"),
        ("# only a comment\n", "names no token"),
    ],
)
def test_a_malformed_tokens_file_is_refused_naming_the_line(text, words):
    with pytest.raises(TokenFileError, match=words):
        Tokens.parse(text)


def test_a_token_names_its_caller_and_nothing_else_does():
    tokens = Tokens.parse(f"alice user {token_digest('a-token')}\nboss admin {token_digest('b-token')}")
    assert (tokens.who("a-token").name, tokens.who("a-token").admin) == ("alice", False)
    assert tokens.who("b-token").admin
    assert tokens.who("a-toke") is None and tokens.who("") is None


def test_a_metrics_token_reads_the_metrics_and_nothing_else():
    tokens = Tokens.parse(f"prometheus metrics {token_digest('m-token')}")
    caller = tokens.who("m-token")
    assert caller.reads_metrics and not caller.admin
