"""Prometheus metrics of a render worker, served by its Celery parent on FILTERVIZ_WORKER_METRICS_PORT.

The pool processes do the work and count it; the parent serves the sum of their counters
(prometheus_client's multiprocess mode, in a folder of this worker's own). So prometheus_client is
imported only after `serve` has named that folder: in the parent at worker_init, in a pool process
(forked later) at its first count.

    filterviz_worker_chunks_total             chunks rendered and stored
    filterviz_worker_filters_total            filters rendered (rate() gives filters/s)
    filterviz_worker_chunk_seconds            histogram of a chunk's time, render and upload
    filterviz_worker_job_failures_total       jobs this worker failed, by error code
    filterviz_worker_lease_recoveries_total   chunks this worker's sweep sent again after their worker died
"""

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

from shared.lifecycle import Events
from shared.metrics_dir import fresh_multiprocess_dir

log = logging.getLogger(__name__)

# A chunk takes seconds (small layers, a GPU) to many minutes (block5 on a CPU).
CHUNK_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)


def serve(port: int) -> None:
    """In the Celery parent, before the pool forks: serve the pool's metrics on `port` (0: don't)."""
    if not port:
        return
    fresh_multiprocess_dir(None)
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        start_http_server(port, registry=registry)
    except OSError as error:  # a port taken must not keep the worker from rendering
        log.warning("worker metrics not served on port %d: %s", port, error)
        return
    log.info("worker metrics on port %d", port)


@dataclass(frozen=True)
class _Metrics:
    chunks: Any
    filters: Any
    chunk_seconds: Any
    failures: Any
    recoveries: Any


@cache
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Histogram

    return _Metrics(
        chunks=Counter("filterviz_worker_chunks", "Chunks rendered and stored"),
        filters=Counter("filterviz_worker_filters", "Filters rendered"),
        chunk_seconds=Histogram("filterviz_worker_chunk_seconds", "A chunk's time", buckets=CHUNK_BUCKETS),
        failures=Counter("filterviz_worker_job_failures", "Jobs failed by this worker, by code", ["code"]),
        recoveries=Counter("filterviz_worker_lease_recoveries", "Chunks sent again after their worker died"),
    )


def chunk_done(filters: int, seconds: float) -> None:
    """A chunk's filters are stored."""
    metrics = _metrics()
    metrics.chunks.inc()
    metrics.filters.inc(filters)
    metrics.chunk_seconds.observe(seconds)


class CountingEvents:
    """Lifecycle events that count failures by code and lease recoveries, then go on to `inner` (the webhooks)."""

    def __init__(self, inner: Events) -> None:
        self._inner = inner

    def moved(self, job_id: str, status: str, code: str | None = None) -> None:
        """Count a failure, then tell `inner`."""
        if code is not None:
            _metrics().failures.labels(code).inc()
        self._inner.moved(job_id, status, code)

    def recovered(self, job_id: str, unit: str) -> None:
        """Count a chunk whose lease lapsed and that the sweep sent again."""
        _metrics().recoveries.inc()
        self._inner.recovered(job_id, unit)
