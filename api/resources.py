"""The job resource: the same JSON shape in every response, from the live record or the manifest."""

from typing import Any

import redis

from shared.job_errors import public_error
from shared.jobs import QUEUED, SUCCEEDED, Job, JobError
from shared.manifest import GRID_FILE, MANIFEST_FILE, THUMBNAIL_FILE
from shared.scheduling import queue_position
from shared.storage import Storage, job_key


def links(job_id: str, status: str, storage: Storage) -> dict[str, str | None]:
    """Where the job and its results are; presigned URLs once the grid exists."""
    base = f"/v1/jobs/{job_id}"
    done = status == SUCCEEDED
    return {
        "self": base,
        "grid": f"{base}/{GRID_FILE}",
        "manifest": f"{base}/{MANIFEST_FILE}",
        "filters": f"{base}/filters",
        "filter": f"{base}/filters/{{index}}.png",
        "thumbnail": f"{base}/{THUMBNAIL_FILE}",
        "grid_presigned": storage.presign(job_key(job_id, GRID_FILE)) if done else None,
    }


def queue_place(db: redis.Redis | None, job: Job, slice_seconds: float) -> dict[str, Any] | None:
    """Where a queued job waits in fair dispatch (None once it runs, or without Redis to ask)."""
    place = queue_position(db, job.id, slice_seconds) if db is not None and job.status == QUEUED else None
    if place is None:
        return None
    return {"chunks_ahead": place.chunks_ahead, "estimated_start_seconds": place.estimated_start_seconds}


def error_view(error: JobError | None, detailed: bool) -> dict[str, str] | None:
    """A failed job's error: its code and a message without internals (shared/job_errors.py); with
    `detailed` (admins), the failure's own words too."""
    if error is None:
        return None
    view = {"code": error.code, "message": public_error(error).message}
    return {**view, "detail": error.message} if detailed else view


def job_resource(
    job: Job, storage: Storage, db: redis.Redis | None = None, detailed: bool = False, slice_seconds: float = 0.0
) -> dict[str, Any]:
    """The resource of a job that Redis still knows; with `db`, a queued job's place in the queue
    (chunks yield after `slice_seconds`); with `detailed` (for admins), the failure's own message in
    `error.detail`."""
    return {
        "id": job.id,
        "status": job.status,
        "progress": {"done": job.done, "total": job.total},
        "params": job.spec.model_dump(mode="json"),
        "weights": job.weights,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": error_view(job.error, detailed),
        "queue": queue_place(db, job, slice_seconds),
        "links": links(job.id, job.status, storage),
    }


def resource_from_manifest(manifest: dict[str, Any], storage: Storage) -> dict[str, Any]:
    """The resource of a finished job, rebuilt from its manifest alone (after Redis forgot it)."""
    timings = manifest["timings"]
    total = len(manifest["params"]["filters"])
    return {
        "id": manifest["id"],
        "status": SUCCEEDED,
        "progress": {"done": total, "total": total},
        "params": manifest["params"],
        "weights": manifest["weights"],
        "created_at": timings["created_at"],
        "started_at": timings["started_at"],
        "finished_at": timings["finished_at"],
        "error": None,
        "queue": None,
        "links": links(manifest["id"], SUCCEEDED, storage),
    }
