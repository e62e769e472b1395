"""A worker process's life: it starts only when healthy, beats while alive, and stops gracefully.

- Start: load VGG16 (other models on their first job) and reach Redis and S3 within
  FILTERVIZ_START_SECONDS, or exit non-zero before running any task. Celery logs and swallows
  exceptions raised in worker_process_init, so a pool process that can't start signals its parent
  (SIGUSR2), which stops with exit code 1, and leaves; Compose or Kubernetes restart the worker.
- Alive: a heartbeat thread (leases, stop flags, the worker's heartbeat) and a sweeper thread.
- Stop: on SIGTERM the Celery parent starts a warm shutdown and sends SIGUSR2 to its pool
  processes; a pool process running a unit stops it at its next check (between steps) and gives
  it back to the queue, so the shutdown ends within seconds and no work waits for a lease to lapse.
"""

import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from billiard.process import active_children, current_process
from celery import Celery

from shared.celery_app import CeleryDispatch, send_webhook
from shared.jobs import job_store
from shared.layers import use_uploaded_models
from shared.lifecycle import Lifecycle
from shared.model_uploads import UploadedTables
from shared.retrying import call_with_retry, transient_s3_error
from shared.settings import Settings
from shared.storage import Storage
from shared.webhooks import JobEvents
from worker.heartbeat import Heartbeat, Sweeper
from worker.metrics import CountingEvents

log = logging.getLogger(__name__)

# How long a starting worker waits for Redis and S3 before it gives up.
START_CHECK_SECONDS = 10
# Parent to pool process: give your unit back. Pool process to parent: I can't start.
# (Not SIGUSR1: billiard's soft time limit uses it in pool processes.)
GIVE_BACK_SIGNAL = START_FAILED_SIGNAL = signal.SIGUSR2
STDERR = 2


@dataclass
class WorkerState:
    """What a worker process sets up once and every task uses."""

    engines: Any  # worker.loading.Engines
    lifecycle: Lifecycle
    storage: Storage
    heartbeat: Heartbeat
    name: str
    # GFLOP/s of the last chunk this process rendered (the cost model's count over its seconds).
    measured_gflops: float | None = None


def start_process(settings: Settings, app: Celery) -> WorkerState:
    """Load the weights, check Redis and S3, and start the heartbeat and sweeper threads (raises on failure)."""
    from worker.loading import Engines, UploadFiles

    storage = Storage(settings, settings.retry_seconds)
    use_uploaded_models(UploadedTables(storage))
    engines = Engines(settings, UploadFiles(storage))
    loaded = engines.default
    job_store(settings, START_CHECK_SECONDS).ping()
    call_with_retry(Storage(settings).check, START_CHECK_SECONDS, transient_s3_error)
    jobs = job_store(settings, settings.retry_seconds)
    events = CountingEvents(JobEvents(jobs, send_webhook(app)))
    lifecycle = Lifecycle(
        jobs, storage, CeleryDispatch(app), lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
        events=events,
    )  # fmt: skip
    name = process_name(settings)
    info = {
        "weights": loaded.weights,
        "device": loaded.runtime.get("device"),
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    heartbeat = Heartbeat(lifecycle, name, info)
    heartbeat.start()
    Sweeper(lifecycle, name, settings.sweep_seconds).start()
    return WorkerState(engines, lifecycle, storage, heartbeat, name)


@contextmanager
def start_deadline(seconds: float) -> Iterator[None]:
    """In a pool process: a start still running after `seconds` (a lock inherited held across the fork,
    a server that takes the connection and never answers) is a start that failed. The stacks of its
    threads go to the log first, to say where it hung."""

    def expired() -> None:
        # To the file descriptor: Celery's pool puts a logging proxy (no descriptor) in sys.stderr.
        faulthandler.dump_traceback(file=STDERR, all_threads=True)
        refuse_to_start(TimeoutError(f"not started after {seconds:.0f} s"))

    timer = threading.Timer(seconds, expired)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def process_name(settings: Settings) -> str:
    """How this process names itself in leases, heartbeats and receipts: `<worker or host>:<pid>`."""
    return f"{settings.worker_name or socket.gethostname()}:{os.getpid()}"


def in_pool_process() -> bool:
    """True in a prefork pool process, False in the Celery parent or a solo-pool worker."""
    return current_process().name != "MainProcess"


def refuse_to_start(error: BaseException) -> NoReturn:
    """Leave without taking a task: the whole worker exits with a non-zero code."""
    log.critical("worker can't start, exiting: %s: %s", type(error).__name__, error)
    if not in_pool_process():
        raise SystemExit(1)  # not an Exception, so Celery's signal dispatch lets it through
    os.kill(os.getppid(), START_FAILED_SIGNAL)
    sys.stderr.flush()
    os._exit(1)


def exit_when_a_pool_process_cannot_start() -> None:
    """In the Celery parent, before the pool starts: a pool process's START_FAILED_SIGNAL stops the
    worker with exit code 1 (Celery's own cold shutdown would exit with 0)."""

    def stop(*_: Any) -> NoReturn:
        raise SystemExit(1)  # WorkController.start turns this into a stop with this exit code

    signal.signal(START_FAILED_SIGNAL, stop)


def listen_for_give_back(state: WorkerState) -> None:
    """In a pool process: SIGUSR2 (sent by the parent on shutdown) gives the running unit back.

    Called as each task starts: billiard resets the pool process's signal handlers after
    worker_process_init, so a handler set there would not stay.
    """
    signal.signal(GIVE_BACK_SIGNAL, lambda *_: state.heartbeat.request_stop())


def ask_pool_to_give_back(state: WorkerState | None) -> None:
    """In the Celery parent, on shutdown: ask each pool process (or this solo worker) to give its unit back."""
    if state is not None:
        state.heartbeat.request_stop()
    for child in active_children():
        with suppress(ProcessLookupError, TypeError):  # already gone, or not started
            os.kill(child.pid, GIVE_BACK_SIGNAL)
