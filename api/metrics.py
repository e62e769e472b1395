"""Prometheus metrics of the API at GET /metrics.

- Requests by route (the URL rule, e.g. /v1/jobs/<job_id>, so that ids don't make a series each),
  method and status, and a latency histogram by route and method. Counted in every gunicorn process
  and summed at scrape time: prometheus_client's multiprocess mode, whose folder
  (PROMETHEUS_MULTIPROC_DIR) api/gunicorn_conf.py creates empty when gunicorn starts.
- Requests count their method as one of HTTP's own, any other as "other": a made-up method makes
  no series.
- Jobs by status, queue lengths, chunks waiting for a slot and live workers: gauges read from Redis
  at scrape time (a custom collector), so they can't drift from the truth as counters kept by hand
  would; at most once per FILTERVIZ_METRICS_CACHE_SECONDS in a process, since counting the jobs
  reads every record.
- Open event streams: a gauge api/events.py moves, summed over the live processes.
- With tokens on, only metrics and admin tokens read them (api/access.py).
"""

import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from cachetools import TTLCache, cached
from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from shared.celery_app import QUEUE, WEBHOOK_QUEUE
from shared.jobs import JOB_LIST, job_keys
from shared.scheduling import chunk_backlog, queued_chunks
from shared.workers import count_live

T = TypeVar("T")
REQUESTS = Counter("filterviz_http_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("filterviz_http_request_duration_seconds", "Time to answer a request", ["route", "method"])
STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
# Job records are read this many at a time (one pipeline each).
BATCH = 1000
# HTTP's methods (RFC 9110, and PATCH): any other is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


def recent(read: Callable[[], T], seconds: float) -> Callable[[], T]:
    """`read`, its answer kept for `seconds` (one reader at a time; the others wait for its answer)."""
    return cached(TTLCache(maxsize=1, ttl=seconds), key=lambda: "", condition=threading.Condition())(read)


def method_label(method: str) -> str:
    """The request's method as a label: one of HTTP's own, else "other" (a made-up method must not
    make a series, nor grow the multiprocess files)."""
    return method if method in METHODS else "other"


class RedisCollector(Collector):
    """Jobs by status (those Redis holds a record of), queue lengths and live workers, read from Redis
    at most once per `seconds` in a process (counting the jobs reads every record)."""

    def __init__(self, db: redis.Redis, seconds: float) -> None:
        self._redis = db
        # One scrape reads Redis; those that come meanwhile take what it read.
        self._gauges = recent(self._read_redis, seconds)

    def collect(self) -> Iterator[Metric]:
        yield from self._gauges()

    def _read_redis(self) -> list[Metric]:
        up = GaugeMetricFamily("filterviz_redis_up", "1 when Redis answered this scrape")
        try:
            metrics = [self._jobs(), self._queues(), self._waiting(), self._workers()]
        except redis.RedisError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _jobs(self) -> Metric:
        tally: Tally[str] = Tally(dict.fromkeys(STATUSES, 0))
        ids = self._redis.zrange(JOB_LIST, 0, -1)
        for start in range(0, len(ids), BATCH):
            with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids[start : start + BATCH]:
                    pipe.hget(job_keys(job_id.decode()).record, "status")
                tally.update(status.decode() for status in pipe.execute() if status is not None)
        family = GaugeMetricFamily("filterviz_jobs", "Jobs whose record Redis holds, by status", labels=["status"])
        for status, count in tally.items():
            family.add_metric([status], count)
        return family

    def _queues(self) -> Metric:
        family = GaugeMetricFamily("filterviz_queue_length", "Messages waiting in a Celery queue", labels=["queue"])
        for queue in (QUEUE, WEBHOOK_QUEUE):
            family.add_metric([queue], self._redis.llen(queue))
        return family

    def _waiting(self) -> Metric:
        # Fair dispatch (shared/scheduling.py) keeps the render queue at one chunk per worker process:
        # the backlog is here.
        family = GaugeMetricFamily("filterviz_chunks_waiting", "Chunks waiting in Redis for a worker slot")
        family.add_metric([], queued_chunks(self._redis))
        return family

    def _workers(self) -> Metric:
        family = GaugeMetricFamily("filterviz_workers_live", "Worker processes with a fresh heartbeat")
        family.add_metric([], count_live(self._redis))
        return family


def _registry(gauges: RedisCollector) -> CollectorRegistry:
    """What one scrape reads: every process's counters (multiprocess mode) or this one's, and Redis."""
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:  # one process (flask run, tests): its own counters
        registry.register(_Default())
    registry.register(gauges)
    return registry


class _Default(Collector):
    """The process's default registry, as one collector."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def init_metrics(app: Flask, db: redis.Redis, cache_seconds: float) -> None:
    """Count every request, and serve GET /metrics and GET /metrics/backlog (with tokens on, to metrics
    and admin tokens only: api/access.py)."""
    gauges = RedisCollector(db, cache_seconds)
    read_backlog = recent(lambda: chunk_backlog(db), cache_seconds)

    @app.before_request
    def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = method_label(request.method)
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        if started is not None:
            LATENCY.labels(route, method).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus' text format."""
        return Response(generate_latest(_registry(gauges)), content_type=CONTENT_TYPE_LATEST)

    @app.get("/metrics/backlog")
    def backlog() -> dict[str, int]:
        """The chunks that want a worker process, as JSON for an autoscaler (KEDA's metrics-api
        trigger, deploy/k8s): a few Redis calls, at most once per `cache_seconds` in a process."""
        return read_backlog()
