"""Retention: a job's results and record are deleted FILTERVIZ_JOB_RECORD_DAYS after its last write.

The bucket init also sets an S3 lifecycle rule, which MinIO and AWS enforce themselves, but
SeaweedFS 4.47 only stores the rule (it expires objects through its separate admin and worker
processes), so this sweep is what deletes results on every server: `python -m shared.retention`
runs it every hour (compose's `retention` service; `make up` starts one too). It lists the
bucket's jobs/ prefix, and each job whose newest object is older than the retention and that is
not queued or running loses its objects and its Redis record, which takes it off the job lists.
The same sweep deletes result-cache entries unused for FILTERVIZ_CACHE_DAYS that no job refers to
(shared/cache.py): the S3 rule covers jobs/ only.
"""

import argparse
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared import cache
from shared.jobs import QUEUED, RUNNING, JobStore, job_store
from shared.settings import Settings
from shared.storage import Storage, job_key

log = logging.getLogger("filterviz.retention")
SWEEP_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class Expired:
    """What one sweep deleted."""

    jobs: list[str]
    objects: int


def newest_writes(listing: Iterable[tuple[str, datetime]]) -> dict[str, float]:
    """Job id -> Unix time of its newest object, from (key, last modified) pairs under jobs/."""
    newest: dict[str, float] = {}
    for key, modified in listing:
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "jobs":
            newest[parts[1]] = max(newest.get(parts[1], 0.0), modified.timestamp())
    return newest


def delete_job(store: JobStore, storage: Storage, job_id: str) -> int:
    """Delete a job's objects and record (and its place on the job lists); the objects deleted."""
    job = store.get(job_id)
    deleted = storage.delete_prefix(job_key(job_id, ""))
    store.forget(job_id, job.owner if job else None)
    return deleted


def expire_results(store: JobStore, storage: Storage, retention_seconds: float, now: float | None = None) -> Expired:
    """Delete every job whose newest object was written over `retention_seconds` before `now`, unless
    it is still queued or running (a long job keeps its first chunks' pictures)."""
    cutoff = (time.time() if now is None else now) - retention_seconds
    old = [job_id for job_id, newest in newest_writes(storage.list_objects("jobs/")).items() if newest < cutoff]
    expired, objects = [], 0
    for job_id in old:
        if store.status(job_id) in {QUEUED, RUNNING}:
            continue
        objects += delete_job(store, storage, job_id)
        expired.append(job_id)
    return Expired(expired, objects)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="one sweep, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    store, storage = job_store(settings), Storage(settings, retry_seconds=settings.retry_seconds)
    retention = settings.job_record_days * 86400
    while True:
        try:
            swept = expire_results(store, storage, retention)
            log.info("deleted %d jobs (%d objects) older than %d days", len(swept.jobs), swept.objects,
                     settings.job_record_days)  # fmt: skip
            entries = cache.expire(store.redis, storage, cache.cache_seconds(settings), time.time())
            log.info("deleted %d cache entries unused for %d days", entries, cache.cache_seconds(settings) // 86400)
        except Exception:  # an outage: the next sweep tries again
            log.exception("retention sweep failed")
            if args.once:
                return 1
        if args.once:
            return 0
        time.sleep(SWEEP_EVERY_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
