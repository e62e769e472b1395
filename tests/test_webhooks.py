"""Webhooks on the real stack: a receiver started here checks each delivery's Standard Webhooks
signature and sees a retry after it answers 500; SSRF targets are refused at submit and at delivery."""

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from api.app import create_app
from devstack.local import LocalStack
from shared.settings import Settings
from tests.service_helpers import SMALL_JOB, running_stack, submit, wait_for

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Receiver:
    """An HTTP server that records every POST; the first delivery of each id in `fail_first` gets a 500."""

    def __init__(self, fail_first: set[str]) -> None:
        self.deliveries: list[dict] = []
        self._fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                message_id = self.headers["webhook-id"]
                failing = message_id in receiver._fail_first
                receiver._fail_first.discard(message_id)
                receiver.deliveries.append(
                    {"headers": dict(self.headers), "body": body, "answered": 500 if failing else 204}
                )
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.deliveries) >= count, f"{len(self.deliveries)} deliveries, expected {count}"
        return self.deliveries


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    env = {"FILTERVIZ_WEBHOOK_SECRET": SECRET, "FILTERVIZ_WEBHOOK_ALLOW_PRIVATE": "1",
           "FILTERVIZ_WEBHOOK_RETRY_SECONDS": "1"}  # fmt: skip
    with running_stack(tmp_path_factory.mktemp("webhooks"), ["w1"], chunk_size=8, env=env) as running:
        running.start_webhook_worker()
        yield running


def test_start_and_completed_are_signed_and_a_500_is_retried(stack):
    receiver = Receiver(fail_first=set())
    job = submit(stack.api_url, {**SMALL_JOB, "webhook": receiver.url})
    receiver._fail_first.add(f"msg_{job['id']}_completed")
    wait_for(stack.api_url, job["id"], {"succeeded"})

    deliveries = receiver.wait_for(3)
    verifier = Webhook(SECRET)
    events = [verifier.verify(d["body"], d["headers"]) for d in deliveries]  # raises on a bad signature
    assert [(e["type"], d["answered"]) for e, d in zip(events, deliveries, strict=True)] == [
        ("job.start", 204), ("job.completed", 500), ("job.completed", 204)
    ]  # fmt: skip
    assert events[0]["data"]["status"] == "running"
    assert events[2]["data"]["status"] == "succeeded"
    assert events[2]["data"]["progress"] == {"done": 16, "total": 16}
    assert events[2]["data"]["links"]["self"] == f"/v1/jobs/{job['id']}"
    # The retry is the same message (same id and body), signed again.
    retried, again = deliveries[1]["headers"], deliveries[2]["headers"]
    assert retried["webhook-id"] == again["webhook-id"] == f"msg_{job['id']}_completed"
    assert deliveries[1]["body"] == deliveries[2]["body"]
    # A signature made with another secret is refused by the same check.
    with pytest.raises(Exception, match="signature"):
        Webhook(base64.b64encode(b"another secret").decode()).verify(deliveries[2]["body"], again)
    # The webhook is not part of the job's parameters (nor of its manifest).
    assert "webhook" not in json.dumps(job["params"])


def test_events_filter_and_a_canceled_job(stack):
    receiver = Receiver(fail_first=set())
    job = submit(
        stack.api_url, {**SMALL_JOB, "seed": 5, "webhook": receiver.url, "webhook_events_filter": ["completed"]}
    )
    response = requests.post(f"{stack.api_url}/v1/jobs/{job['id']}/cancel", json={}, timeout=10)
    assert response.status_code == 200, response.text
    (delivery,) = receiver.wait_for(1)
    event = Webhook(SECRET).verify(delivery["body"], delivery["headers"])
    assert (event["type"], event["data"]["status"]) == ("job.completed", "canceled")
    time.sleep(2)  # a start event, were it wrongly sent, would be in by now
    assert len(receiver.deliveries) == 1


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook",
     "http://localhost/hook", "http://[::1]/hook", "http://0x7f000001/hook", "ftp://example.org/hook"],
)  # fmt: skip
def test_ssrf_targets_are_refused_at_submit(stack, url):
    settings = Settings(redis_url=stack.env["REDIS_URL"], s3_endpoint_url=stack.env["S3_ENDPOINT_URL"],
                        webhook_secret=SECRET)  # fmt: skip
    assert settings.webhook_allow_private is False
    client = create_app(settings).test_client()
    response = client.post("/v1/jobs", json={**SMALL_JOB, "webhook": url})
    assert response.status_code == 422, response.text
    error = response.get_json()["error"]
    assert error["code"] == "invalid_webhook"
    assert error["problems"][0]["field"] == "webhook"


def test_webhooks_need_a_secret_and_known_events(stack):
    settings = Settings(redis_url=stack.env["REDIS_URL"], s3_endpoint_url=stack.env["S3_ENDPOINT_URL"])
    response = (
        create_app(settings).test_client().post("/v1/jobs", json={**SMALL_JOB, "webhook": "https://example.org/"})
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "webhooks_disabled")
    bad_filter = {**SMALL_JOB, "webhook": "http://127.0.0.1:1/", "webhook_events_filter": ["output"]}
    response = requests.post(f"{stack.api_url}/v1/jobs", json=bad_filter, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["problems"][0]["field"].startswith("webhook_events_filter")


def test_a_name_that_resolves_to_loopback_at_delivery_is_never_called(stack, monkeypatch):
    """DNS rebinding: a name that was public at submit may point inside by delivery time."""
    from worker import webhook_tasks

    receiver = Receiver(fail_first=set())
    monkeypatch.setattr(webhook_tasks.settings, "webhook_allow_private", False)
    url = receiver.url.replace("127.0.0.1", "localhost")
    outcome = webhook_tasks.deliver_webhook.apply(args=(url, "{}", "msg_rebound")).get()
    assert "not a public address" in outcome["refused"]
    assert receiver.deliveries == []
