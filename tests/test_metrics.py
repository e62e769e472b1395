"""Prometheus metrics on the real stack: the API's /metrics (gunicorn's processes summed) and a
worker's, parsed by prometheus_client's own parser, move as a job runs; logs are JSON lines with
the job id and chunk."""

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.local import LocalStack, free_port, wait_until
from tests.service_helpers import SMALL_JOB, running_stack, submit, wait_for

WORKER_METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    # Two API processes, so the counts must be summed across them (multiprocess mode).
    # Gauges read afresh at every scrape here (by default they are kept 5 s: tests/test_security.py).
    env = {"FILTERVIZ_WORKER_METRICS_PORT": str(WORKER_METRICS_PORT), "FILTERVIZ_API_WORKERS": "2",
           "FILTERVIZ_LOG_FORMAT": "json", "FILTERVIZ_METRICS_CACHE_SECONDS": "0"}  # fmt: skip
    with running_stack(tmp_path_factory.mktemp("metrics"), ["w1"], chunk_size=8, env=env) as running:
        yield running


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition at url, by name and labels."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_api_metrics_move_after_a_job(stack):
    before = scrape(f"{stack.api_url}/metrics")
    job = submit(stack.api_url, SMALL_JOB)
    wait_for(stack.api_url, job["id"], {"succeeded"})
    for _ in range(10):  # spread over both processes by new connections
        assert requests.get(f"{stack.api_url}/v1/jobs/{job['id']}", timeout=10).status_code == 200
    assert requests.get(f"{stack.api_url}/v1/jobs/not-a-job", timeout=10).status_code == 404
    after = scrape(f"{stack.api_url}/metrics")

    submitted = {"route": "/v1/jobs", "method": "POST", "status": "202"}
    assert (
        value(after, "filterviz_http_requests_total", **submitted)
        == value(before, "filterviz_http_requests_total", **submitted) + 1
    )
    # The route is the URL rule, not the path: every job's id counts under one series.
    looked_up = {"route": "/v1/jobs/<job_id>", "method": "GET"}
    grown = value(after, "filterviz_http_requests_total", **looked_up, status="200") - value(
        before, "filterviz_http_requests_total", **looked_up, status="200"
    )
    assert grown >= 11  # the 10 above and wait_for's polls
    assert value(after, "filterviz_http_requests_total", **looked_up, status="404") >= 1
    assert not any("not-a-job" in str(labels) for _, labels in after)
    # The latency histogram counts the same requests.
    count = value(after, "filterviz_http_request_duration_seconds_count", **looked_up)
    assert count == value(after, "filterviz_http_requests_total", **looked_up, status="200") + value(
        after, "filterviz_http_requests_total", **looked_up, status="404"
    )
    assert value(after, "filterviz_http_request_duration_seconds_bucket", **looked_up, le="+Inf") == count
    # Gauges read from Redis at scrape time.
    assert value(after, "filterviz_jobs", status="succeeded") == value(before, "filterviz_jobs", status="succeeded") + 1
    assert value(after, "filterviz_jobs", status="running") == 0
    assert value(after, "filterviz_queue_length", queue="filterviz.render") == 0
    assert value(after, "filterviz_workers_live") == 1
    assert value(after, "filterviz_redis_up") == 1


def test_a_made_up_method_is_counted_as_other_and_makes_no_series(stack):
    for n in range(5):
        response = requests.request(f"BREW{n}", f"{stack.api_url}/v1/jobs", timeout=10)
        assert response.status_code == 405
    samples = scrape(f"{stack.api_url}/metrics")
    methods = {dict(labels).get("method") for _, labels in samples}
    assert not any(str(method).startswith("BREW") for method in methods)
    assert value(samples, "filterviz_http_requests_total", route="unmatched", method="other", status="405") >= 5


def test_queue_depth_counts_waiting_chunks(stack):
    """With the worker paused, a job's chunks wait: fair dispatch sends the broker one per worker
    process (one here), the rest wait in Redis, and the backlog gauge and the autoscaler's JSON say
    so, whatever the paused worker's pending BRPOP took from the Celery queue."""
    stack.signal("w1", signal.SIGSTOP)
    try:
        job = submit(stack.api_url, {**SMALL_JOB, "filters": {"start": 0, "stop": 24}, "seed": 3})  # 3 chunks
        samples = scrape(f"{stack.api_url}/metrics")
        backlog = requests.get(f"{stack.api_url}/metrics/backlog", timeout=10).json()
    finally:
        stack.signal("w1", signal.SIGCONT)
    assert value(samples, "filterviz_chunks_waiting") == 2
    assert backlog == {"queued_chunks": 2, "in_flight_chunks": 1, "chunks": 3}
    assert value(samples, "filterviz_jobs", status="queued") == 1
    wait_for(stack.api_url, job["id"], {"succeeded"})


def test_worker_metrics_count_chunks_and_filters(stack):
    url = f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics"
    before = scrape(url)
    job = submit(stack.api_url, {**SMALL_JOB, "seed": 4})
    wait_for(stack.api_url, job["id"], {"succeeded"})
    after = scrape(url)

    def grown(name: str) -> float:
        return value(after, name) - value(before, name)

    assert grown("filterviz_worker_chunks_total") == 2  # 16 filters, 8 a chunk
    assert grown("filterviz_worker_filters_total") == 16
    assert grown("filterviz_worker_chunk_seconds_count") == 2
    assert grown("filterviz_worker_chunk_seconds_sum") > 0


def json_lines(path) -> list[dict]:
    """The log's lines that are JSON objects (TensorFlow and Celery's banner print plain text)."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def test_logs_are_json_lines_with_the_job_and_chunk(stack):
    job = submit(stack.api_url, {**SMALL_JOB, "seed": 6})
    wait_for(stack.api_url, job["id"], {"succeeded"})

    def chunks_logged() -> set[str]:
        lines = json_lines(stack.workdir / "w1.log")
        return {e["chunk"] for e in lines if e.get("job_id") == job["id"] and "chunk" in e}

    # The last chunk's task finishes the job, then logs its own end: that line may follow the job's end.
    wait_until(lambda: chunks_logged() == {"0", "1"}, "both chunks' log lines", 30)
    assert {"time", "level", "logger", "message"} <= set(json_lines(stack.workdir / "w1.log")[-1])
    api = json_lines(stack.workdir / "api.log")
    assert any("POST /v1/jobs" in e["message"] and " 202 " in e["message"] for e in api)


def test_prometheus_scrapes_the_api_and_the_workers_where_compose_serves_them():
    root = Path(__file__).resolve().parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load((root / "deploy/monitoring/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["filterviz-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    assert any(port.endswith(":8000") for port in compose["api"]["ports"])
    for name in ("worker", "worker-gpu"):
        (discovery,) = jobs[f"filterviz-{name}"]["dns_sd_configs"]
        assert discovery["names"] == [name]
        assert discovery["port"] == int(compose[name]["environment"]["FILTERVIZ_WORKER_METRICS_PORT"])
    prometheus = compose["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    mount = "./deploy/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # Deliveries have their own consumer of their own queue.
    webhooks = compose["webhooks"]["command"]
    assert webhooks[:3] == ["celery", "-A", "worker.webhook_tasks"]
    assert webhooks[webhooks.index("--queues") + 1] == "filterviz.webhooks"
