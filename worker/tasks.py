"""Celery tasks: thin glue between the queue, the engine and storage.

Start a worker with `celery -A worker.tasks worker -Q filterviz.render`. Each pool process loads
VGG16 once, when it starts (TensorFlow is not fork-safe, so never in the parent).
"""

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from shared.celery_app import FINISH_JOB, RENDER_CHUNK, create_celery
from shared.jobs import CANCELED, FINISHED, JobError, JobStore, job_store, now
from shared.manifest import GRID_FILE, MANIFEST_FILE, THUMBNAIL_FILE, THUMBNAIL_SIDE, build_manifest, filter_file
from shared.settings import Settings
from shared.storage import PARALLEL_TRANSFERS, Storage, chunk_record_name, job_key
from shared.thumbnails import png_thumbnail

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)
settings = Settings()
app = create_celery(settings)


@dataclass
class WorkerState:
    """What a worker process loads once and every task uses."""

    loaded: Any  # worker.loading.LoadedEngine
    jobs: JobStore
    storage: Storage
    name: str


_state: WorkerState | None = None


@worker_process_init.connect
def load_model_in_pool_process(**_: Any) -> None:
    """Load VGG16 before this process takes tasks; a worker without usable weights must not start."""
    global _state
    from worker.loading import load_engine

    loaded = load_engine(settings.weights, settings)
    storage = Storage(settings)
    storage.ensure_bucket()
    name = f"{os.environ.get('FILTERVIZ_WORKER_NAME') or socket.gethostname()}:{os.getpid()}"
    _state = WorkerState(loaded, job_store(settings), storage, name)
    log.info("worker %s ready: weights %s loaded in %.1f s", name, loaded.weights, loaded.load_seconds)


def state() -> WorkerState:
    """This process's loaded state (loaded at process start, or now for pools without processes)."""
    if _state is None:
        load_model_in_pool_process()
    assert _state is not None
    return _state


@app.task(name=RENDER_CHUNK)
def render_chunk(job_id: str, chunk_index: int, filters: list[int]) -> dict[str, Any]:
    """Render one chunk of a job's filters and store their pictures and losses."""
    from worker.imaging import encode_png
    from worker.loading import pick_batch_size
    from worker.render import filter_entries, render_filters

    current = state()
    job = current.jobs.get(job_id)
    if job is None or job.status in FINISHED:
        return {"chunk": chunk_index, "skipped": job.status if job else "unknown job"}
    weights = current.jobs.claim_weights(job_id, current.loaded.weights)
    if weights != current.loaded.weights:
        message = f"workers disagree on weights: job uses {weights}, worker {current.name} has {current.loaded.weights}"
        current.jobs.mark_failed(job_id, JobError("weights_mismatch", message))
        return {"chunk": chunk_index, "skipped": "weights mismatch"}
    current.jobs.mark_running(job_id)

    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        current.jobs.set_chunk_progress(job_id, chunk_index, done)

    started = time.perf_counter()
    try:
        rendered = render_filters(
            current.loaded.engine,
            job.spec,
            filters,
            batch_size=pick_batch_size(job.spec, len(filters), settings),
            on_progress=advance,
            should_stop=lambda: current.jobs.status(job_id) == CANCELED,
        )
    except SoftTimeLimitExceeded:
        current.jobs.mark_failed(job_id, JobError("chunk_timeout", f"a chunk ran over {settings.chunk_time_limit} s"))
        raise
    except Exception as error:
        current.jobs.mark_failed(job_id, JobError("render_failed", f"chunk {chunk_index} failed: {error}"))
        raise
    if len(rendered) < len(filters):
        return {"chunk": chunk_index, "skipped": CANCELED}

    uploads = [(job_key(job_id, filter_file(r.index)), encode_png(r.picture), "image/png") for r in rendered]
    with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:  # S3 round trips dominate: overlap them
        list(pool.map(lambda upload: current.storage.put(*upload), uploads))
    record = {
        "chunk": chunk_index,
        "worker": current.name,
        "seconds": round(time.perf_counter() - started, 3),
        "filters": filter_entries(rendered, chunk=chunk_index, worker=current.name),
    }
    current.storage.put_json(job_key(job_id, chunk_record_name(chunk_index)), record)
    return {"chunk": chunk_index, "worker": current.name}


@app.task(name=FINISH_JOB)
def finish_job(chunk_results: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    """Once every chunk is in: stitch the grid from the stored pictures and write the manifest."""
    from worker.imaging import FilterOutcome, decode_png, encode_png, grid_order, stitch_grid

    current = state()
    job = current.jobs.get(job_id)
    if job is None or job.status in FINISHED:
        return {"skipped": job.status if job else "unknown job"}
    finished_chunks = current.storage.chunk_records(job_id)
    missing = [i for i in range(job.chunks) if i not in finished_chunks]
    if missing:
        current.jobs.mark_failed(job_id, JobError("chunk_missing", f"chunks {missing} left no results"))
        return {"failed": "chunk_missing"}

    records = [finished_chunks[i] for i in range(job.chunks)]
    entries = [entry for record in records for entry in record["filters"]]
    outcomes = [FilterOutcome(e["index"], e["loss"], e["dead"]) for e in entries]
    order = grid_order(outcomes, job.spec.grid.n)
    with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
        stored = pool.map(lambda k: current.storage.get(job_key(job_id, filter_file(k))), order)
        pictures = {k: decode_png(data) for k, data in zip(order, stored, strict=True)}
    grid = stitch_grid(order, pictures, n=job.spec.grid.n, image_size=job.spec.image_size, margin=job.spec.grid.margin)
    grid_png = encode_png(grid)
    current.storage.put(job_key(job_id, GRID_FILE), grid_png, "image/png")
    current.storage.put(job_key(job_id, THUMBNAIL_FILE), png_thumbnail(grid_png, THUMBNAIL_SIDE), "image/png")

    finished_at = now()
    manifest = build_manifest(
        job_id=job_id,
        spec=job.spec,
        weights=job.weights or current.loaded.weights,
        filters=entries,
        grid_order=order,
        timings={
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": finished_at,
            "chunks": [{"chunk": r["chunk"], "worker": r["worker"], "seconds": r["seconds"]} for r in records],
        },
        runtime=current.loaded.runtime,
    )
    current.storage.put_json(job_key(job_id, MANIFEST_FILE), manifest)
    current.jobs.mark_succeeded(job_id, finished_at)
    return {"grid": len(order)}
