"""The background threads of a worker: each pool process's heartbeat and share of the recovery sweep,
and the Celery parent's beat of the units it holds.

The heartbeat wakes every second. It renews the lease of the unit the process runs and reads its
job's status in the same Redis call, so `should_stop` is a plain attribute read: the engine asks
it before every step at no cost, and a canceled, failed or overdue job stops within about a second.
Every few seconds it also publishes the worker's own heartbeat (shared/workers.py).

The sweeper runs shared/lifecycle.py's sweep when this process wins the sweep lock. It has its own
thread because a sweep may wait on S3 for minutes, and leases must be renewed meanwhile.

The Celery parent receives the messages; its holdings beat publishes which units it holds (reserved
or running), so that a unit delivered here and never begun is sent again once this parent is gone
or no longer holds it (shared/deliveries.py).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from shared.deliveries import publish_holdings
from shared.lifecycle import Lifecycle, Unit
from shared.workers import PUBLISH_SECONDS, publish, withdraw

log = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
# Why a unit stops when its worker shuts down (it is then given back, not dropped).
WORKER_STOPPING = "worker stopping"
# Why a chunk stops at a batch boundary for another client's work (it keeps what it finished).
YIELDING = "yielding to another client"


def run_every(seconds: float, step: Callable[[], None], name: str, failure: str, first_here: bool = False) -> None:
    """Run `step` every `seconds` in a daemon thread (it ends with the process); with `first_here`, the
    first run is in the caller, before this returns. A failure is logged and the next period tries
    again: Redis or S3 down past their retries is no reason to stop beating."""

    def once() -> None:
        try:
            step()
        except Exception:
            log.exception(failure)

    def forever() -> None:
        while True:
            once()
            time.sleep(seconds)

    def after_a_period() -> None:
        time.sleep(seconds)
        forever()

    if first_here:
        once()
    threading.Thread(target=after_a_period if first_here else forever, name=name, daemon=True).start()


class Watch:
    """The stop flag of one running unit, set by the heartbeat thread."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def should_stop(self) -> bool:
        """True once the unit should stop (cheap: called between steps)."""
        return self.reason is not None

    def stop(self, reason: str) -> None:
        """Ask the unit to stop; the first reason wins."""
        if self.reason is None:
            self.reason = reason


class Heartbeat:
    """Lease renewals, stop flags and worker heartbeats of one worker process."""

    def __init__(self, lifecycle: Lifecycle, name: str, info: dict[str, Any]) -> None:
        self._lifecycle = lifecycle
        self._name = name
        self._info = info
        self._running: tuple[Unit, Watch] | None = None
        self._stopping = False  # the worker shuts down: give running units back
        self._lock = threading.Lock()
        self._published = 0.0
        self._publishing = threading.Lock()  # a beat mid-publish ends before a withdrawal
        self._withdrawn = False

    def start(self) -> None:
        """Start the heartbeat thread (daemon: it ends with the process)."""
        run_every(BEAT_SECONDS, self._beat, "filterviz-heartbeat", "heartbeat failed")

    @contextmanager
    def holding(self, unit: Unit) -> Iterator[Watch]:
        """Keep `unit`'s lease alive while the block runs; the lease is dropped at the end whatever happens."""
        watch = Watch()
        if self._stopping:
            watch.stop(WORKER_STOPPING)
        with self._lock:
            self._running = (unit, watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._running = None
            self._lifecycle.release(unit)

    def request_stop(self) -> None:
        """The worker is shutting down: the running unit stops at its next check and is given back."""
        self._stopping = True
        with self._lock:
            if self._running is not None:
                self._running[1].stop(WORKER_STOPPING)

    @property
    def busy(self) -> bool:
        """A unit is running in this process."""
        return self._running is not None

    def withdraw(self) -> None:
        """Stop counting this worker as live (on a clean exit); no later beat publishes it again."""
        with self._publishing:
            self._withdrawn = True
            withdraw(self._lifecycle.jobs.redis, self._name)

    def _beat(self) -> None:
        self._renew()
        with self._publishing:
            if not self._withdrawn and time.monotonic() - self._published >= PUBLISH_SECONDS:
                self._publish()
                self._published = time.monotonic()

    def _renew(self) -> None:
        with self._lock:
            running = self._running
        if running is None:
            return
        unit, watch = running
        renewal = self._lifecycle.renew(unit)
        if not renewal.ours:
            watch.stop("lease lost")
        elif not renewal.go_on:
            watch.stop(f"job {renewal.status}" if not renewal.past_deadline else "deadline exceeded")

    def _publish(self) -> None:
        with self._lock:
            running = self._running
        doing = f"{running[0].job_id}:{running[0].name}" if running else None
        publish(self._lifecycle.jobs.redis, self._name, {**self._info, "unit": doing})


class Sweeper:
    """Runs the recovery sweep every `sweep_seconds` when this process holds the sweep lock."""

    def __init__(self, lifecycle: Lifecycle, name: str, sweep_seconds: int) -> None:
        self._lifecycle = lifecycle
        self._name = name
        self._seconds = sweep_seconds

    def start(self) -> None:
        """Start the sweeper thread (daemon)."""
        run_every(self._seconds, self._sweep, "filterviz-sweeper", "sweep failed")

    def _sweep(self) -> None:
        if self._lifecycle.try_sweep_lock(self._name, self._seconds):
            self._lifecycle.sweep()


class HoldingsBeat:
    """In the Celery parent: every PUBLISH_SECONDS, the units of the requests it holds."""

    def __init__(self, db: redis.Redis, name: str, held: Callable[[], list[str]]) -> None:
        self._db = db
        self._name = name
        self._held = held

    def start(self) -> None:
        """Beat once here, then every PUBLISH_SECONDS in a daemon thread (it ends with the process).

        The first beat runs in the caller, before the pool forks: it is the process's first connection,
        and a pool process forked while another thread is inside its first getaddrinfo (which imports
        encodings.idna) inherits that lock held, and hangs forever on its own first connection.
        """
        run_every(PUBLISH_SECONDS, self._beat, "filterviz-holdings", "holdings beat failed", first_here=True)

    def _beat(self) -> None:
        publish_holdings(self._db, self._name, self._held())
