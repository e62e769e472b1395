"""Webhooks on the real stack: a receiver started here checks each delivery's Standard Webhooks
signature (made with its owner's own secret) and sees a retry after it answers 500; a receiver that
trickles or streams forever is cut at the deadline and holds no other owner's delivery; SSRF targets
are refused at submit and at delivery."""

import base64
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from api.app import create_app
from devstack.local import LocalStack
from shared.celery_app import DELIVER_WEBHOOK, create_celery
from shared.settings import Settings
from shared.webhook_signing import owner_secret
from shared.webhooks import (
    DNS_TIMEOUT_SECONDS,
    NOT_PUBLIC,
    UnsafeWebhook,
    WebhookPolicy,
    is_public,
    resolve_destination,
)
from tests.service_helpers import SMALL_JOB, running_stack, submit, wait_for

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
DEADLINE = 3


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
    # Receivers here are on loopback and random ports; a delivery may take DEADLINE s, one owner 2 at once.
    env = {"FILTERVIZ_WEBHOOK_SECRET": SECRET, "FILTERVIZ_WEBHOOK_ALLOW_PRIVATE": "1",
           "FILTERVIZ_WEBHOOK_PORTS": "any", "FILTERVIZ_WEBHOOK_RETRY_SECONDS": "1",
           "FILTERVIZ_WEBHOOK_TIMEOUT_SECONDS": str(DEADLINE), "FILTERVIZ_WEBHOOK_OWNER_CONCURRENCY": "2"}  # fmt: skip
    with running_stack(tmp_path_factory.mktemp("webhooks"), ["w1"], chunk_size=8, env=env) as running:
        running.start_webhook_worker()
        yield running


def test_start_and_completed_are_signed_and_a_500_is_retried(stack):
    receiver = Receiver(fail_first=set())
    job = submit(stack.api_url, {**SMALL_JOB, "webhook": receiver.url})
    receiver._fail_first.add(f"msg_{job['id']}_completed")
    wait_for(stack.api_url, job["id"], {"succeeded"})

    deliveries = receiver.wait_for(3)
    # Signed with the secret of the job's owner (tokens are off here: the one open owner), which the
    # API hands out; never with the master secret itself.
    owner_secret = requests.get(f"{stack.api_url}/v1/webhook-secret", timeout=10).json()["secret"]
    verifier = Webhook(owner_secret)
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
    # A signature made with another secret (the master's among them) is refused by the same check.
    for other in (base64.b64encode(b"another secret").decode(), SECRET):
        with pytest.raises(Exception, match="signature"):
            Webhook(other).verify(deliveries[2]["body"], again)
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
    event = Webhook(owner_secret(SECRET, None)).verify(delivery["body"], delivery["headers"])
    assert (event["type"], event["data"]["status"]) == ("job.completed", "canceled")
    time.sleep(2)  # a start event, were it wrongly sent, would be in by now
    assert len(receiver.deliveries) == 1


NOWHERE = "127.0.0.1:9"  # nothing listens: these refusals need no Redis or S3


def offline_app(**overrides):
    settings = Settings(redis_url=f"redis://{NOWHERE}/0", s3_endpoint_url=f"http://{NOWHERE}", webhook_secret=SECRET,
                        submit_rate_limit="off", **overrides)  # fmt: skip
    assert settings.webhook_allow_private is False
    return create_app(settings).test_client()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/hook", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook",
     "http://localhost/hook", "http://[::1]/hook", "http://0x7f000001/hook", "ftp://example.org/hook",
     # IPv4 inside IPv6: NAT64 (to loopback, to cloud metadata), its local-use prefix, 6to4, IPv4-compatible
     "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::a00:1]/",
     "http://[2002:7f00:1::]/", "http://[::127.0.0.1]/", "http://[::ffff:10.0.0.1]/",
     # deprecated site-local IPv6; IANA's 192.0.0.0/24 (is_global passes .192 on Python 3.11)
     "http://[fec0::1]/", "http://192.0.0.192/",
     # a public address on a port other than 80 and 443 (a Redis, say)
     "http://1.1.1.1:6379/", "https://1.1.1.1:8443/"],
)  # fmt: skip
def test_ssrf_targets_are_refused_at_submit(url):
    response = offline_app().post("/v1/jobs", json={**SMALL_JOB, "webhook": url})
    assert response.status_code == 422, response.text
    error = response.get_json()["error"]
    assert error["code"] == "invalid_webhook"
    assert error["problems"][0]["field"] == "webhook"


def test_the_refusal_does_not_say_what_an_internal_name_resolves_to():
    for url in ("http://localhost/hook", "http://no-such-name.invalid/hook"):
        error = offline_app().post("/v1/jobs", json={**SMALL_JOB, "webhook": url}).get_json()["error"]
        assert error["problems"][0]["reason"] == NOT_PUBLIC, url  # the same words whether it resolves or not
        assert "127.0.0.1" not in json.dumps(error)


@pytest.mark.parametrize("address", ["1.1.1.1", "2606:4700:4700::1111", "64:ff9b::101:101", "2002:101:101::"])
def test_public_addresses_and_ipv6_forms_of_public_ipv4_may_be_called(address):
    assert is_public(ipaddress.ip_address(address))


def test_configured_ports_and_a_private_policy_are_honoured():
    policy = WebhookPolicy(allow_private=True, ports=frozenset({8080}))
    assert resolve_destination("http://127.0.0.1:8080/x?y=1", policy).target == "/x?y=1"
    with pytest.raises(UnsafeWebhook, match="port 80 is not one webhooks may use here"):
        resolve_destination("http://127.0.0.1/x", policy)
    assert resolve_destination("http://127.0.0.1:6379/", WebhookPolicy(True, None)).port == 6379


def test_a_lookup_that_hangs_is_refused_within_the_dns_timeout(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(DNS_TIMEOUT_SECONDS + 3))
    started = time.monotonic()
    with pytest.raises(UnsafeWebhook) as refused:
        resolve_destination("https://slow.example/hook", WebhookPolicy())
    assert time.monotonic() - started < DNS_TIMEOUT_SECONDS + 1
    assert str(refused.value) == NOT_PUBLIC and "did not resolve within" in refused.value.detail


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
    monkeypatch.setattr(webhook_tasks.settings, "webhook_secret", SECRET)
    monkeypatch.setattr(webhook_tasks.settings, "webhook_ports", "any")
    url = receiver.url.replace("127.0.0.1", "localhost")
    outcome = webhook_tasks.deliver_webhook.apply(args=(url, "{}", "msg_rebound")).get()
    assert outcome["refused"] == NOT_PUBLIC
    assert receiver.deliveries == []


class Tarpit:
    """A receiver that never finishes answering: it trickles a header byte every half second
    (`trickle`), or sends a 200 and then a body that never ends. Records how long each connection lasted."""

    def __init__(self, trickle: bool) -> None:
        self.held: list[float] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self._trickle = trickle
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            connection, _ = self._server.accept()
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        started = time.monotonic()
        try:
            connection.recv(65536)
            if self._trickle:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while True:
                    connection.sendall(b"a")
                    time.sleep(0.5)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            while True:
                connection.sendall(b"[" * 65536)
        except OSError:
            self.held.append(time.monotonic() - started)
        finally:
            connection.close()


def deliver(stack, url: str, message_id: str, owner: str) -> None:
    """Queue a delivery for the stack's webhooks worker, as the lifecycle does."""
    create_celery(stack.settings).send_task(DELIVER_WEBHOOK, args=(url, "{}", message_id), kwargs={"owner": owner})


def test_a_trickling_receiver_is_cut_at_the_deadline_and_holds_no_other_owners_delivery(stack):
    tarpit, receiver = Tarpit(trickle=True), Receiver(fail_first=set())
    # Four of one owner's deliveries to the tarpit: as many as the worker has threads.
    for n in range(4):
        deliver(stack, tarpit.url, f"msg_slow_{n}", "slow-tenant")
    time.sleep(1)  # the slow owner's two slots are held; its other two wait, holding no thread
    sent = time.monotonic()
    deliver(stack, receiver.url, "msg_fast", "fast-tenant")
    (delivery,) = receiver.wait_for(1, timeout=30)
    assert time.monotonic() - sent < DEADLINE - 0.5, "another owner's delivery waited behind the tarpit"
    assert Webhook(owner_secret(SECRET, "fast-tenant")).verify(delivery["body"], delivery["headers"]) == {}
    # Each attempt on the tarpit ends at the deadline, however slowly it keeps answering.
    deadline = time.monotonic() + 30
    while len(tarpit.held) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(tarpit.held) >= 4 and max(tarpit.held) < DEADLINE + 2, tarpit.held


def test_a_receiver_streaming_forever_is_answered_by_its_status_and_the_worker_stays_up(stack):
    streamer, receiver = Tarpit(trickle=False), Receiver(fail_first=set())
    deliver(stack, streamer.url, "msg_stream", "streaming-tenant")
    deadline = time.monotonic() + 20
    while not streamer.held and time.monotonic() < deadline:
        time.sleep(0.1)
    assert streamer.held and streamer.held[0] < DEADLINE, "the body was read"
    log = (stack.workdir / "webhooks.log").read_text(errors="replace")
    assert "webhook msg_stream delivered" in log
    assert "/hook" not in log  # receivers are named by scheme, host and port only: a path may hold a secret
    deliver(stack, receiver.url, "msg_after", "streaming-tenant")
    receiver.wait_for(1, timeout=30)  # the same worker delivers the next one
    assert stack.processes["webhooks"].poll() is None


def test_deliveries_are_acked_when_they_start_and_not_requeued_when_their_worker_is_lost():
    from worker.webhook_tasks import deliver_webhook

    assert deliver_webhook.acks_late is False and deliver_webhook.reject_on_worker_lost is False


@pytest.mark.stack  # starts its own servers
def test_a_webhooks_worker_without_a_secret_signs_nothing_and_keeps_the_delivery(tmp_path):
    # Its own Redis: the stack's configured worker would take the delivery.
    alone = LocalStack(tmp_path, extra_env={"FILTERVIZ_WEBHOOK_SECRET": ""})
    receiver = Receiver(fail_first=set())
    try:
        alone.start_redis()
        worker = alone.start_webhook_worker()
        create_celery(alone.settings).send_task(DELIVER_WEBHOOK, args=(receiver.url, "{}", "msg_unsigned"))
        log = tmp_path / "webhooks.log"
        deadline = time.monotonic() + 30
        while "webhook msg_unsigned not sent" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        assert "FILTERVIZ_WEBHOOK_SECRET is not set: this worker signs nothing" in text
        assert "webhook msg_unsigned not sent" in text and "waits 60 s" in text
        assert receiver.deliveries == [] and worker.poll() is None
    finally:
        alone.stop_all(at_once=True)


def test_an_empty_secret_signs_nothing():
    from shared.webhook_signing import signed_headers

    with pytest.raises(ValueError, match="empty"):
        signed_headers("whsec_", "msg", 1, "{}")
    with pytest.raises(ValidationError):
        Settings(webhook_secret="whsec_")


def test_an_event_tells_a_failure_without_its_internals():
    from shared.jobs import Job, JobError
    from shared.spec import parse_spec
    from shared.webhooks import event_body

    raw = "chunk 2 failed: ConnectionError: redis://10.0.0.5:6379 worker-7:4242"
    job = Job("j1", "failed", parse_spec({"filters": [0]}), None, "t0", "t1", "t2", JobError("render_failed", raw),
              0, 1, None)  # fmt: skip
    error = json.loads(event_body(job, "completed", "t2"))["data"]["error"]
    assert error["code"] == "render_failed" and "submit the job again" in error["message"]
    assert "10.0.0.5" not in json.dumps(error) and "worker-7" not in json.dumps(error)
