"""Hostile and malformed requests, answered by the API's own code with no Redis or S3 behind it
(Flask's test client; both point at closed ports). Refusals that need no service come first, so
none of these reaches a dependency; the ones that do get a 503, never a 500."""

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.app import create_app
from api.auth import TokenFileError, token_digest
from api.headers import SECURITY_HEADERS
from devstack.local import free_port
from shared.settings import Settings

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there
ROOT = Path(__file__).resolve().parent.parent
LARGEST = {"layer": "block5_conv3", "filters": {"start": 0, "stop": 512}, "image_size": 512, "steps": 200,
           "grid": {"n": 7, "margin": 64}}  # fmt: skip


def app_with(**overrides):
    settings = Settings(
        redis_url=f"redis://{NOWHERE}/0", s3_endpoint_url=f"http://{NOWHERE}", submit_rate_limit="", **overrides
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def client():
    return app_with().test_client()


def post_raw(client, body: str | bytes):
    return client.post("/v1/jobs", data=body, content_type="application/json")


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ('{"filters": {"start": 0, "stop": 2336070789}}', 422, "filters.stop", "above the limit of 2048"),
        ('{"filters": {"start": 0, "stop": 9223372036854775808}}', 422, "filters.stop", "above the limit of 2048"),
        ('{"filters": {"start": 0, "stop": 1' + "0" * 4000 + "}}", 422, "filters.stop", "above the limit"),
        ("[" * 20000, 400, "body", "recursion limit exceeded"),
        ('{"a":' * 5000 + "1" + "}" * 5000, 400, "body", "recursion limit exceeded"),
        ('{"steps": 1' + "0" * 5000 + "}", 400, "body", "number out of range"),
        ('{"steps": true}', 422, "steps", "valid integer"),
        ('{"steps": "20"}', 422, "steps", "valid integer"),
        ('{"image_size": 64.0}', 422, "image_size", "valid integer"),
        ('{"step_size": NaN}', 422, "step_size", "finite number"),
        ('{"layer": "' + "x" * 60000 + '"}', 422, "layer", "at most 64 characters"),
        ('{"method": {}}', 422, "method", "Input should be"),
        ('{"image_size": 512, "grid": {"n": 8, "margin": 64}}', 422, "grid", "4544 px a side"),
    ],
)
def test_hostile_bodies_are_refused_naming_the_problem(client, body, status, field, words):
    response = post_raw(client, body)
    assert response.status_code == status, response.json
    assert any(p["field"] == field and words in p["reason"] for p in response.json["error"]["problems"])


def test_an_oversized_body_is_413(client):
    response = post_raw(client, '{"filters": [' + "1," * 40000 + "1]}")
    assert response.status_code == 413 and response.json["error"]["code"] == "request_entity_too_large"


def test_a_job_over_the_compute_budget_says_by_how_much_and_what_to_shrink(client):
    response = client.post("/v1/jobs", json=LARGEST)
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "over_budget"
    assert "228.1x the per-job budget of 144.0 TFLOP" in error["message"] and "ask for at most" in error["message"]


def test_the_budget_follows_the_worker_class():
    fast_workers = app_with(worker_gflops=1e6, max_output_mb=1024).test_client()
    # Admitted by the budget; then refused only because storage (nowhere) can't be reached.
    response = fast_workers.post("/v1/jobs", json=LARGEST)
    assert response.status_code == 503 and response.json["error"]["code"] == "storage_unavailable"


def test_a_valid_job_with_storage_and_redis_down_is_503_with_retry_after(client):
    response = client.post("/v1/jobs", json={"layer": "block1_conv1", "filters": [0], "image_size": 32, "steps": 2})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert client.get("/v1/jobs").status_code == 503
    job = client.get("/v1/jobs/0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c")
    assert job.status_code == 503 and job.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"].startswith("unavailable")
    assert ready.json["checks"]["s3"].startswith("not writable: EndpointConnectionError")


@pytest.mark.parametrize(
    "job_id",
    ["12345678-1234-1234-1234-123456789abc", "0B0E4F1E-62F8-4D8B-A3F6-6F3A3F6B8F7C",
     "{0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c}", "urn:uuid:0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c",
     "0b0e4f1e62f84d8ba3f66f3a3f6b8f7c"],
)  # fmt: skip
def test_only_the_canonical_spelling_of_a_v4_id_names_a_job(client, job_id):
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404 and response.json["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"])
def test_cancel_by_post_takes_only_json_so_a_cross_site_form_cannot(client, content_type):
    response = client.post(
        "/v1/jobs/0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c/cancel", data="x=1", content_type=content_type
    )
    assert response.status_code == 415


@pytest.mark.parametrize("path", ["/", "/jobs/x", "/docs", "/openapi.json", "/healthz", "/v1/models", "/v1/nothing"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_a_405_says_which_methods_are_allowed(client):
    response = client.put("/v1/jobs", json={})
    assert response.status_code == 405 and set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_openapi_document_states_the_configured_limits():
    raised = app_with(max_steps=1000, max_image_size=640, max_grid_n=20, max_filters=100).test_client()
    schemas = raised.get("/openapi.json").json["components"]["schemas"]
    spec = schemas["JobSpec"]["properties"]
    assert (spec["steps"]["maximum"], spec["image_size"]["maximum"]) == (1000, 640)
    assert schemas["Grid"]["properties"]["n"]["maximum"] == 20
    assert spec["filters"]["anyOf"][0]["oneOf"][0]["maxItems"] == 100
    over = raised.post("/v1/jobs", json={"steps": 1001})
    assert over.json["error"]["problems"] == [{"field": "steps", "reason": "1001 is above the limit of 1000"}]


def test_healthz_says_which_version_answers(client):
    from shared.version import package_version

    assert client.get("/healthz").get_json() == {"status": "ok", "version": package_version()}


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/atlas"])
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_a_non_finite_method_parameter_is_a_422_not_a_500(path, number):
    admin = app_with(api_tokens_file=None).test_client()  # tokens off: anyone may start an atlas here
    response = admin.post(path, data=f'{{"method": "fourier", "method_params": {{"scale": {number}}}}}',
                          content_type="application/json")  # fmt: skip
    assert response.status_code == 422, response.json
    assert response.json["error"]["problems"][0] == {
        "field": "method_params.scale",
        "reason": "Input should be a finite number",
    }


def tokens_app(tmp_path, **overrides):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice user {token_digest('alice-token')}\nboss admin {token_digest('boss-token')}\n")
    return app_with(api_tokens_file=str(tokens), **{"failed_auth_limit": "off", **overrides})


def test_a_user_token_starting_an_atlas_is_refused_before_its_body_is_read(tmp_path):
    client = tokens_app(tmp_path).test_client()
    for body in ("{not json", '{"method": "fourier", "method_params": {"pad": 1e999}}', '{"layers": ["nope"]}'):
        response = client.post("/v1/atlas", data=body, content_type="application/json",
                               headers={"Authorization": "Bearer alice-token"})  # fmt: skip
        assert (response.status_code, response.json["error"]["code"]) == (403, "admin_only"), body


@pytest.mark.parametrize("host", ["evil.example", "rebound.attacker.test:8000", "10.0.0.7"])
def test_a_host_not_configured_is_a_400_whatever_the_path(client, host):
    # DNS rebinding: a page on another site resolves its own name to this API and calls it.
    for path in ("/healthz", "/v1/jobs", "/"):
        assert client.get(path, headers={"Host": host}).status_code == 400, (host, path)
    for allowed in ("localhost:8000", "127.0.0.1:8000", "api:8000"):
        assert client.get("/healthz", headers={"Host": allowed}).status_code == 200


def test_configured_hosts_and_their_subdomains_are_answered():
    client = app_with(allowed_hosts="filterviz.example.org,.svc").test_client()
    for host in ("filterviz.example.org", "api.default.svc:8000"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 400
    assert app_with(allowed_hosts="*").test_client().get("/healthz", headers={"Host": "x.test"}).status_code == 200


def test_a_413_says_the_connection_closes(client):
    response = post_raw(client, '{"filters": [' + "1," * 40000 + "1]}")
    assert response.status_code == 413 and response.headers["Connection"] == "close"


def test_in_kubernetes_the_api_refuses_to_start_without_tokens_unless_told_it_may(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(TokenFileError, match="FILTERVIZ_ALLOW_NO_TOKENS=1"):
        app_with()
    assert app_with(allow_no_tokens=True).test_client().get("/healthz").status_code == 200
    assert tokens_app(tmp_path).test_client().get("/v1/models").status_code == 401  # with tokens, it starts


def test_each_owner_reads_its_own_webhook_secret_and_it_verifies_only_its_deliveries(tmp_path):
    from standardwebhooks.webhooks import Webhook

    from shared.webhook_signing import signed_headers

    master = "whsec_" + base64.b64encode(b"m" * 32).decode()
    client = tokens_app(tmp_path, webhook_secret=master).test_client()
    secrets = {}
    for name in ("alice", "boss"):
        response = client.get("/v1/webhook-secret", headers={"Authorization": f"Bearer {name}-token"})
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
        assert response.json["owner"] == name
        secrets[name] = response.json["secret"]
    assert secrets["alice"] != secrets["boss"] and master not in secrets.values()
    assert client.get("/v1/webhook-secret").status_code == 401
    headers = signed_headers(secrets["alice"], "msg_1", int(time.time()), "{}")
    assert Webhook(secrets["alice"]).verify("{}", headers) == {}
    with pytest.raises(Exception, match="signature"):
        Webhook(secrets["boss"]).verify("{}", headers)  # one tenant's secret can't vouch for another's
    off = app_with().test_client().get("/v1/webhook-secret")
    assert (off.status_code, off.json["error"]["code"]) == (422, "webhooks_disabled")


def test_while_redis_is_down_wrong_tokens_are_not_throttled_and_what_needs_no_redis_still_answers(tmp_path):
    client = tokens_app(tmp_path, failed_auth_limit="2 per minute").test_client()
    for _ in range(4):
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer alice-token"}).status_code == 200


def test_gunicorn_in_kubernetes_without_tokens_exits_saying_why():
    env = {**os.environ, "KUBERNETES_SERVICE_HOST": "10.96.0.1", "S3_SECRET_ACCESS_KEY": "not-a-documented-default",
           "REDIS_URL": f"redis://{NOWHERE}/0", "FILTERVIZ_API_TOKENS_FILE": ""}  # fmt: skip
    command = [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", f"127.0.0.1:{free_port()}",
               "api.wsgi:app"]  # fmt: skip
    finished = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert "runs in Kubernetes without tokens" in finished.stderr and "Traceback" not in finished.stderr
