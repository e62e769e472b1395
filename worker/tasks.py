"""Celery tasks: thin glue between the queue, the engine, storage and the job lifecycle.

Start a worker with `celery -A worker.tasks worker -Q filterviz.render`. Each pool process loads
VGG16 once, when it starts (TensorFlow is not fork-safe, so never in the parent), and exits the
whole worker when it can't (worker/process.py). How units start, hold leases, end and recover is
shared/lifecycle.py; here each task only does its work between `begin` and one way out.
"""

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import (
    task_received,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutting_down,
)
from celery.worker import state as worker_state

from shared import cache, deliveries
from shared.celery_app import FINISH_JOB, RENDER_CHUNK, create_celery, unit_of_task
from shared.cost import filter_flops
from shared.finish import write_results
from shared.jobs import now, redis_client
from shared.lifecycle import DONE, FINISH, HELD, Skipped, Unit
from shared.manifest import filter_file
from shared.settings import Settings
from shared.storage import MissingObject, chunk_record_name, job_key
from worker import job_logs, metrics
from worker.heartbeat import WORKER_STOPPING, YIELDING, HoldingsBeat, Watch
from worker.process import (
    WorkerState,
    ask_pool_to_give_back,
    exit_when_a_pool_process_cannot_start,
    in_pool_process,
    listen_for_give_back,
    process_name,
    refuse_to_start,
    start_deadline,
    start_process,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)
settings = Settings()
app = create_celery(settings)
job_logs.install(settings.log_format, {RENDER_CHUNK, FINISH_JOB})

STORAGE_ERRORS = (BotoCoreError, ClientError)
# Redis still down after the client's own retries: Celery sends the task again later, with backoff.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
TASK_OPTIONS = {"autoretry_for": REDIS_ERRORS, "retry_backoff": 5, "retry_backoff_max": 120, "max_retries": 5}

_state: WorkerState | None = None
# The Celery parent's Redis client, for receipts and its holdings beat (pool processes have their own).
parent_redis = redis_client(settings)


@worker_init.connect
def watch_pool_starts(**_: Any) -> None:
    """In the Celery parent: a pool process that can't start takes the whole worker down; the pool's
    metrics are served (before the pool forks: worker/metrics.py); the units it holds are published
    before it takes any (shared/deliveries.py)."""
    exit_when_a_pool_process_cannot_start()
    metrics.serve(settings.worker_metrics_port)
    HoldingsBeat(parent_redis, process_name(settings), held_units).start()


def unit_of(request: Any) -> tuple[str, str] | None:
    """(job id, unit) of a task request of ours, else None."""
    return unit_of_task(request.name, request.args)


def held_units() -> list[str]:
    """The units of the requests this Celery parent holds, reserved or running."""
    return [deliveries.member(*unit) for request in list(worker_state.reserved_requests) if (unit := unit_of(request))]


@task_received.connect
def record_receipt(request: Any = None, **_: Any) -> None:
    """In the Celery parent, as a message arrives: say that this worker has the unit."""
    unit = unit_of(request)
    if unit is None:
        return
    try:
        deliveries.received(parent_redis, *unit, process_name(settings))
    except REDIS_ERRORS:  # the unit is then found by the sweep's timer instead
        log.warning("could not record the receipt of %s", deliveries.member(*unit))


@worker_process_init.connect
def start_pool_process(**_: Any) -> None:
    """Load VGG16 and reach Redis and S3 before this process takes tasks, or take the worker down."""
    global _state
    # A solo worker starts inside its first task, under the task's time limit.
    deadline = start_deadline(settings.start_seconds) if in_pool_process() else nullcontext()
    try:
        with deadline:
            _state = start_process(settings, app)
    except Exception as error:
        refuse_to_start(error)
    loaded = _state.engines.default
    log.info("worker %s ready: weights %s loaded in %.1f s", _state.name, loaded.weights, loaded.load_seconds)
    try:
        _state.lifecycle.fill()  # one more slot: send it a chunk now, not at the next sweep
    except REDIS_ERRORS:
        log.exception("could not fill the new slot (the sweep will)")


@worker_process_shutdown.connect
def leave(**_: Any) -> None:
    """A clean exit: stop counting this process among the live workers."""
    if _state is not None:
        _state.heartbeat.withdraw()


@worker_shutting_down.connect
def give_back_on_shutdown(**_: Any) -> None:
    """SIGTERM: running chunks stop at their next step and go back to the queue."""
    ask_pool_to_give_back(_state)


def state() -> WorkerState:
    """This process's state (set up at process start; for the solo pool, now), as a task starts."""
    if _state is None:
        start_pool_process()
    assert _state is not None
    listen_for_give_back(_state)
    return _state


@contextmanager
def failing_on_error(current: WorkerState, unit: Unit, what: str) -> Iterator[None]:
    """Every way out of a unit by exception ends its job with a code, or is retried (Redis errors)."""
    try:
        yield
    except SoftTimeLimitExceeded:
        current.lifecycle.fail(unit, "chunk_timeout", f"{what} ran over {settings.chunk_time_limit} s")
        raise
    except STORAGE_ERRORS as error:  # refused, or still failing after FILTERVIZ_RETRY_SECONDS of retries
        current.lifecycle.fail(unit, "storage_unavailable", f"{what} could not use storage: {error}")
        raise
    except MissingObject as error:  # a picture the finish stitches, deleted or expired since it was stored
        current.lifecycle.fail(unit, "picture_missing", f"{what} could not read a picture: {error}")
        raise
    except REDIS_ERRORS:
        raise  # autoretry; if Redis stays away, the lease lapses and the sweep sends the unit again
    except Exception as error:
        current.lifecycle.fail(unit, "render_failed", f"{what} failed: {error}")
        raise


def _stopped(current: WorkerState, unit: Unit, reason: str, filters: list[int] | None) -> dict[str, Any]:
    """A unit that stopped early: given back when its worker stops, dropped when its job ended."""
    current.lifecycle.stopped(unit, filters, worker_stopping=reason == WORKER_STOPPING)
    return {"unit": unit.name, "stopped": reason}


@app.task(name=RENDER_CHUNK, **TASK_OPTIONS)
def render_chunk(job_id: str, chunk_index: int, filters: list[int]) -> dict[str, Any]:
    """Render one chunk of a job's filters and store their pictures and losses."""
    from worker.frames import frame_tap
    from worker.loading import pick_batch_size, slice_batch_size
    from worker.render import render_filters

    current = state()
    unit = current.lifecycle.begin(job_id, str(chunk_index), current.name, current.engines.identity, filters)
    if isinstance(unit, Skipped):
        if unit.why == DONE:  # sent again: the finish may have died with the process that ran it here
            return {"chunk": chunk_index, "skipped": unit.why, "finish": _finish_if_orphaned(current, job_id)}
        return {"chunk": chunk_index, "skipped": unit.why}
    spec = unit.job.spec
    done = 0
    started = time.perf_counter()

    def advance(count: int) -> None:
        """A batch is done: count it, and yield here when the fair slice is spent and another client waits."""
        nonlocal done
        done += count
        current.lifecycle.progress(unit, done)
        spent = settings.fair_slice_seconds and time.perf_counter() - started >= settings.fair_slice_seconds
        if spent and done < len(filters) and current.lifecycle.others_waiting(unit):
            watch.stop(YIELDING)

    batch_size = min(
        pick_batch_size(spec, len(filters), settings), slice_batch_size(spec, settings, current.measured_gflops)
    )
    with current.heartbeat.holding(unit) as watch, failing_on_error(current, unit, f"chunk {chunk_index}"):
        frames = frame_tap(current.lifecycle.stream, job_id, spec, chunk_index, settings.frames_per_second)
        rendered = render_filters(
            current.engines.get(spec.model, spec.weights).engine, spec, filters, batch_size=batch_size,
            on_progress=advance,
            should_stop=watch.should_stop,
            frames=frames,
        )  # fmt: skip
        if watch.reason == YIELDING and rendered:
            current.lifecycle.yield_rest(unit, [r.index for r in rendered], list(filters[len(rendered) :]))
        elif watch.reason is not None or len(rendered) < len(filters):
            return _stopped(current, unit, watch.reason or "stopped", filters)
        seconds = time.perf_counter() - started
        current.measured_gflops = filter_flops(spec) * len(rendered) / seconds / 1e9
        record = _store_chunk(current, unit, rendered, seconds)
        finish_here = current.lifecycle.chunk_done(unit, finish_here=True)
        metrics.chunk_done(len(rendered), time.perf_counter() - started)
    if finish_here:  # this chunk completed its job: finish it here, not through the broker
        in_hand = {r.index: r.picture for r in rendered}
        finished = _finish(current, job_id, just_stored={unit.chunk: record}, in_hand=in_hand)
        return {"chunk": chunk_index, "worker": current.name, "finish": finished}
    return {"chunk": chunk_index, "worker": current.name}


def _store_filters(current: WorkerState, job_id: str, spec: Any, rendered: list, **extra: Any) -> list[dict[str, Any]]:
    """Upload the job's filter pictures, and the same into the result cache under the weights that made
    them (shared/cache.py), even for "cache": false, in one round; their manifest entries."""
    from shared.pictures import encode_png
    from worker.render import filter_entries

    pngs = [encode_png(r.picture) for r in rendered]
    own = [(job_key(job_id, filter_file(r.index)), png, "image/png") for r, png in zip(rendered, pngs, strict=True)]
    entries = filter_entries(rendered, **extra, worker=current.name)
    cache.store(current.storage, current.lifecycle.jobs.redis, spec, current.engines.identity(spec),
                zip(entries, pngs, strict=True), cache.cache_seconds(settings), alongside=own)  # fmt: skip
    current.lifecycle.stored(job_id, entries)
    return entries


def _store_chunk(current: WorkerState, unit: Unit, rendered: list, seconds: float) -> dict[str, Any]:
    """Upload the chunk's pictures, then its record: the record's presence means the chunk is done."""
    entries = _store_filters(current, unit.job_id, unit.job.spec, rendered, chunk=unit.chunk)
    record = {"chunk": unit.chunk, "worker": current.name, "seconds": round(seconds, 3), "filters": entries}
    current.storage.put_json(job_key(unit.job_id, chunk_record_name(unit.chunk)), record)
    return record


def _render_gone_hits(
    current: WorkerState, unit: Unit, watch: Watch, done: list[dict]
) -> tuple[dict[int, dict], list[dict]] | None:
    """The job's cache hits still in the bucket (the filters its chunks, whose entries are `done`, did
    not render), and the entries of those gone since its submission, rendered here again (a missing
    object is a miss); None when the job ended meanwhile."""
    from worker.loading import pick_batch_size
    from worker.render import render_filters

    unrendered = set(unit.job.spec.filters) - {entry["index"] for entry in done}
    referred = cache.job_hits(current.storage, unit.job_id) if unrendered else {}
    hits = cache.still_stored(current.storage, current.lifecycle.jobs.redis, referred) if referred else {}
    gone = [index for index in referred if index not in hits]
    if not gone:
        return hits, []
    log.warning("job %s: the cached pictures of filters %s are gone from the bucket: rendering them again",
                unit.job_id, gone)  # fmt: skip
    spec = unit.job.spec
    engine = current.engines.get(spec.model, spec.weights).engine
    rendered = render_filters(engine, spec, gone, batch_size=pick_batch_size(spec, len(gone), settings),
                              should_stop=lambda: watch.reason not in (None, WORKER_STOPPING))  # fmt: skip
    if len(rendered) < len(gone):
        return None
    again = _store_filters(current, unit.job_id, spec, rendered)
    cache.record_hits(current.storage, unit.job_id, hits)  # the job refers to what is there
    return hits, again


def _finish_if_orphaned(current: WorkerState, job_id: str) -> dict[str, Any]:
    """The job's finish, unless it is done, running or its chunks are not all in (`begin` says which):
    a pool process killed in an inline finish is redelivered its chunk, which finds itself done. On
    another worker, the dead holder's lease still looks held: it is tried once more when it would be
    stale (STALE_SECONDS unrenewed; a live holder renews it every second, and keeps it)."""
    finished = _finish(current, job_id)
    stale_in = current.lifecycle.stale_in(job_id, FINISH) if finished.get("skipped") == HELD else None
    if stale_in is not None:
        time.sleep(stale_in + 0.5)
        finished = _finish(current, job_id)
    if "skipped" not in finished:
        log.warning("job %s: a chunk sent again found itself done and its finish not running: finished here", job_id)
    return finished


@app.task(name=FINISH_JOB, **TASK_OPTIONS)
def finish_job(job_id: str) -> dict[str, Any]:
    """Once every chunk is in: stitch the grid from the stored pictures and write the manifest."""
    return _finish(state(), job_id)


def _finish(
    current: WorkerState, job_id: str, just_stored: dict[int, dict] | None = None, in_hand: dict | None = None
) -> dict[str, Any]:
    """just_stored: the chunk records the calling task stored just before, by chunk; in_hand: the
    pictures it stored, by filter (neither read back)."""
    unit = current.lifecycle.begin(job_id, FINISH, current.name, current.engines.identity)
    if isinstance(unit, Skipped):
        return {"skipped": unit.why}
    with current.heartbeat.holding(unit) as watch, failing_on_error(current, unit, "the finish step"):
        return _assemble(current, unit, watch, just_stored or {}, in_hand or {})


def _assemble(
    current: WorkerState, unit: Unit, watch: Watch, just_stored: dict[int, dict], in_hand: dict
) -> dict[str, Any]:
    """Stitch the grid and write the manifest (shared/finish.py); a job canceled or failed meanwhile gets neither."""
    job_id, job = unit.job_id, unit.job
    if just_stored.keys() >= set(range(job.chunks)):  # a one-chunk job, finished where it ran
        finished_chunks = just_stored
    else:
        finished_chunks = current.storage.chunk_records(job_id)
    missing = [i for i in range(job.chunks) if i not in finished_chunks]
    if missing:
        current.lifecycle.fail(unit, "chunk_missing", f"chunks {missing} left no results")
        return {"failed": "chunk_missing"}

    records = [finished_chunks[i] for i in range(job.chunks)]
    rendered = [entry for record in records for entry in record["filters"]]
    healed = _render_gone_hits(current, unit, watch, rendered)
    if healed is None:
        return {"stopped": watch.reason}
    hits, again = healed
    finished_at = now()
    stored = write_results(
        current.storage,
        job,
        weights=job.weights or current.engines.identity(job.spec),
        entries=[*rendered, *again],
        hits=hits,
        timings={
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": finished_at,
            "chunks": [{"chunk": r["chunk"], "worker": r["worker"], "seconds": r["seconds"]} for r in records],
        },
        runtime=current.engines.default.runtime,
        # a finish runs to its end on shutdown, not for a job that ended
        still_wanted=lambda: watch.reason in (None, WORKER_STOPPING),
        in_hand=in_hand,
    )
    if not stored:
        return {"stopped": watch.reason}
    current.lifecycle.finish_done(unit, finished_at)
    return {"grid": min(len(job.spec.filters), job.spec.grid.n**2)}
