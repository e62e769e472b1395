"""The API's side of the result cache (shared/cache.py): look a request's filters up at submission,
make the job refer to its hits, and finish at once a job whose every filter was a hit."""

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from api.services import Services
from api.webhooks import tell_moved
from shared import cache
from shared.finish import write_results
from shared.jobs import RUNNING, SUCCEEDED, job_keys, now
from shared.numerics import numerics_identity
from shared.spec import JobSpec


@dataclass(frozen=True)
class Cached:
    """The filters of a request the cache holds, and the weights they were looked up under."""

    weights: str | None = None
    hits: dict[int, dict[str, Any]] = field(default_factory=dict)


def cached_filters(found: Services, spec: JobSpec) -> Cached:
    """The request's cache hits whose pictures are in the bucket; none when it asks for `"cache": false`
    or the weights are not known (live workers disagree, or none is live and none ever agreed)."""
    if not spec.cache:
        return Cached()
    redis = found.jobs.redis
    configured = numerics_identity(found.settings.weights, found.settings.precision)
    weights = cache.weights_for_lookup(redis, configured)
    if weights is None:
        return Cached()
    hits = cache.lookup(redis, spec, weights, cache.cache_seconds(found.settings))
    return Cached(weights, cache.still_stored(found.storage, redis, hits) if hits else {})


def refer_to_hits(found: Services, job_id: str, cached: Cached) -> None:
    """Bind the job to the weights of its hits (a worker with others fails it: weights_mismatch, never a
    mix), write its reference to them, and count them as done."""
    if not cached.hits or cached.weights is None:  # hits come with the weights they were looked up under
        return
    found.jobs.claim_weights(job_id, cached.weights)
    cache.record_hits(found.storage, job_id, cached.hits)
    with found.jobs.redis.pipeline() as pipe:
        pipe.hset(job_keys(job_id).progress, cache.HITS_PROGRESS, len(cached.hits))
        found.jobs.touch(pipe, job_id)
        pipe.execute()


def finish_from_cache(found: Services, job_id: str, cached: Cached) -> None:
    """queued -> running -> succeeded now, for a job with no chunk: every filter was a hit.

    Should storage fail midway, the job stays running with no chunk, and the recovery sweep sends
    its finish to a worker (shared/lifecycle.py)."""
    if found.jobs.mark_running(job_id):
        tell_moved(found, job_id, RUNNING)
    job = found.jobs.get(job_id)
    if job is None or cached.weights is None:  # its record gone already; hits come with their weights
        current_app.logger.warning("job %s: not finished from the cache: its record is gone", job_id)
        return
    finished_at = now()
    try:
        write_results(
            found.storage,
            job,
            weights=cached.weights,
            entries=[],
            hits=cached.hits,
            timings={
                "created_at": job.created_at,
                "started_at": job.started_at,
                "finished_at": finished_at,
                "chunks": [],
            },
            runtime={"from_cache": True},
        )
    except Exception:
        current_app.logger.exception("job %s: its results from the cache could not be written; the sweep will", job_id)
        return
    if found.jobs.mark_succeeded(job_id, finished_at):
        tell_moved(found, job_id, SUCCEEDED)
