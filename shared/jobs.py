"""The live job record in Redis: status, timestamps, deadline, error and progress, with atomic transitions.

The record answers while a job runs and for a while after; the manifest in storage is the
durable record of a finished job. Every change renews the record's lifetime, so a job that
waits or runs long never expires midway. How a job moves between statuses (chunks, leases,
attempts, the finish, the sweep) is told in shared/lifecycle.py; this module only stores.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis

from shared.cost import job_cost
from shared.keys import JOB, JOB_LIST, LIVE_JOBS, OWNER_JOBS
from shared.retrying import redis_retry
from shared.spec import JobSpec

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED})

# A job's deadline when none is configured: a floor for queueing and start-up, plus its compute
# at a rate far below any worker's (two CPU cores do about 100 GFLOP/s), so only a stuck job meets it.
DEADLINE_FLOOR_SECONDS = 1800
DEADLINE_GFLOPS = 10

# Set status to ARGV[1] only from one of the ARGV[3 .. 2+ARGV[2]] statuses; then HSET the
# remaining ARGV as field/value pairs. Returns 1 when the transition happened, 0 when not, nil
# for an unknown job. Atomic, so a cancel and a chunk starting can't both win.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return nil end
local n_from = tonumber(ARGV[2])
for i = 3, 2 + n_from do
  if current == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    for j = 3 + n_from, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1]) end
    return 1
  end
end
return 0
"""


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadline_seconds(spec: JobSpec, configured: int = 0) -> float:
    """How long after submission a job may take: the configured value, or one derived from its cost."""
    if configured:
        return float(configured)
    return DEADLINE_FLOOR_SECONDS + job_cost(spec).flops / (DEADLINE_GFLOPS * 1e9)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a stable code and a message a person can act on."""

    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as the record holds it."""

    id: str
    status: str
    spec: JobSpec
    weights: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: JobError | None
    done: int
    chunks: int
    deadline: float | None  # Unix time; None for records written before deadlines existed
    webhook: str | None = None  # JSON url and events (shared/webhooks.py); None when none was asked for
    owner: str | None = None  # the API token's name that submitted it; None with tokens off

    @property
    def total(self) -> int:
        """Filters in the job."""
        return len(self.spec.filters)


class JobKeys(NamedTuple):
    """The Redis keys of one job's record; they live and expire together."""

    record: str  # hash: status, spec, timestamps, deadline, error
    progress: str  # hash: chunk -> filters done
    units: str  # hash: starts:<unit> -> starts, plan:<chunk> -> its filters (shared/lifecycle.py)
    done: str  # set: chunks whose record is stored
    queued: str  # list: chunks not yet sent to the broker (shared/scheduling.py)
    events: str  # stream: what happens to the job, for GET /v1/jobs/{id}/events (shared/job_events.py)


def owner_list(owner: str) -> str:
    """The sorted set of one token's jobs (by creation time), beside JOB_LIST."""
    return OWNER_JOBS + owner


def job_keys(job_id: str) -> JobKeys:
    """The Redis keys of one job."""
    base = JOB + job_id
    return JobKeys(base, f"{base}:progress", f"{base}:units", f"{base}:done", f"{base}:queued", f"{base}:events")


class JobStore:
    """Job records in Redis."""

    def __init__(self, db: redis.Redis, record_seconds: int, deadline_seconds: int = 0) -> None:
        self.redis = db
        self._record_seconds = record_seconds
        self._deadline_seconds = deadline_seconds
        self._transition = db.register_script(_TRANSITION)

    @staticmethod
    def _key(job_id: str) -> str:
        return job_keys(job_id).record

    @staticmethod
    def _progress_key(job_id: str) -> str:
        return job_keys(job_id).progress

    def touch(self, pipe: redis.client.Pipeline, job_id: str) -> None:
        """Queue on `pipe` the renewal of the job's lifetime: it counts from the last change."""
        for key in job_keys(job_id):
            pipe.expire(key, self._record_seconds)

    def create(self, job_id: str, spec: JobSpec, chunks: int, owner: str | None = None) -> None:
        """Record a new queued job, with its deadline (and owner), among the live jobs the sweep watches."""
        deadline = time.time() + deadline_seconds(spec, self._deadline_seconds)
        with self.redis.pipeline() as pipe:
            pipe.hset(
                self._key(job_id),
                mapping={
                    "status": QUEUED,
                    "spec": spec.model_dump_json(),
                    "created_at": now(),
                    "chunks": chunks,
                    "deadline": f"{deadline:.3f}",
                },
            )
            self.touch(pipe, job_id)
            pipe.zadd(JOB_LIST, {job_id: time.time()})
            if owner is not None:
                pipe.hset(self._key(job_id), "owner", owner)
                pipe.zadd(owner_list(owner), {job_id: time.time()})
                # Outlives every record it lists: each of them lives at most this long past its last change.
                pipe.expire(owner_list(owner), self._record_seconds)
            pipe.sadd(LIVE_JOBS, job_id)
            pipe.execute()

    def get(self, job_id: str) -> Job | None:
        """The job, or None when Redis has no record of it."""
        with self.redis.pipeline() as pipe:
            pipe.hgetall(self._key(job_id))
            pipe.hvals(self._progress_key(job_id))
            fields, progress = pipe.execute()
        if not fields:
            return None
        fields = {k.decode(): v.decode() for k, v in fields.items()}
        error = json.loads(fields["error"]) if fields.get("error") else None
        return Job(
            id=job_id,
            status=fields["status"],
            spec=JobSpec.model_validate_json(fields["spec"]),
            weights=fields.get("weights"),
            created_at=fields["created_at"],
            started_at=fields.get("started_at"),
            finished_at=fields.get("finished_at"),
            error=JobError(**error) if error else None,
            done=sum(int(v) for v in progress),
            chunks=int(fields["chunks"]),
            deadline=float(fields["deadline"]) if fields.get("deadline") else None,
            webhook=fields.get("webhook"),
            owner=fields.get("owner"),
        )

    def recent(self, limit: int, owner: str | None = None) -> list[str]:
        """Ids of the most recently created jobs (of `owner`, or everyone's) that still have a record,
        newest first.

        Ids whose record expired are dropped from the list as they are met, so it never grows
        beyond the records that exist.
        """
        listed = JOB_LIST if owner is None else owner_list(owner)
        found: list[str] = []
        start = 0
        while len(found) < limit:
            ids = [i.decode() for i in self.redis.zrevrange(listed, start, start + limit - 1)]
            if not ids:
                break
            with self.redis.pipeline() as pipe:
                for job_id in ids:
                    pipe.exists(self._key(job_id))
                exists = pipe.execute()
            gone = [job_id for job_id, present in zip(ids, exists, strict=True) if not present]
            if gone:
                self.redis.zrem(listed, *gone)
            found += [job_id for job_id, present in zip(ids, exists, strict=True) if present]
            start += len(ids) - len(gone)
        return found[:limit]

    def live(self) -> list[str]:
        """Ids of the jobs not yet known to be finished (the recovery sweep's work list)."""
        return [i.decode() for i in self.redis.smembers(LIVE_JOBS)]

    def forget_live(self, job_id: str) -> None:
        """Drop a finished or vanished job from the live set."""
        self.redis.srem(LIVE_JOBS, job_id)

    def status(self, job_id: str) -> str | None:
        """Just the status (cheap enough to ask between batches)."""
        value = self.redis.hget(self._key(job_id), "status")
        return value.decode() if value else None

    def claim_weights(self, job_id: str, weights: str) -> str:
        """Record which weights render this job, first worker wins; returns the recorded weights."""
        # One transaction: the field read back is there, set now or by the first worker.
        with self.redis.pipeline() as pipe:
            pipe.hsetnx(self._key(job_id), "weights", weights)
            pipe.hget(self._key(job_id), "weights")
            _, recorded = pipe.execute()
        return recorded.decode()

    def set_webhook(self, job_id: str, webhook: str) -> None:
        """Keep where to send the job's events (before its chunks are queued, so before it can start)."""
        self.redis.hset(self._key(job_id), "webhook", webhook)

    def set_chunk_progress(self, job_id: str, chunk_index: int, done: int) -> int:
        """Filters done in one chunk; set, not added, so a chunk that runs again counts once. Returns
        the job's filters done in all (cache hits included)."""
        with self.redis.pipeline() as pipe:
            pipe.hset(self._progress_key(job_id), str(chunk_index), done)
            pipe.hvals(self._progress_key(job_id))
            self.touch(pipe, job_id)
            counts = pipe.execute()[1]
        return sum(int(count) for count in counts)

    def _move(self, job_id: str, to: str, sources: tuple[str, ...], **fields: str) -> bool:
        pairs = [item for field in fields.items() for item in field]
        moved = self._transition(keys=[self._key(job_id)], args=[to, len(sources), *sources, *pairs]) == 1
        with self.redis.pipeline() as pipe:
            self.touch(pipe, job_id)
            if to in FINISHED:
                pipe.srem(LIVE_JOBS, job_id)
            pipe.execute()
        return moved

    def mark_running(self, job_id: str) -> bool:
        """queued -> running; False if the job is already past queued."""
        return self._move(job_id, RUNNING, (QUEUED,), started_at=now())

    def mark_succeeded(self, job_id: str, finished_at: str) -> bool:
        """running -> succeeded."""
        return self._move(job_id, SUCCEEDED, (RUNNING,), finished_at=finished_at)

    def mark_failed(self, job_id: str, error: JobError) -> bool:
        """queued or running -> failed, with the error."""
        payload = json.dumps({"code": error.code, "message": error.message})
        return self._move(job_id, FAILED, (QUEUED, RUNNING), finished_at=now(), error=payload)

    def cancel(self, job_id: str) -> bool:
        """queued or running -> canceled; chunks check this before and between steps."""
        return self._move(job_id, CANCELED, (QUEUED, RUNNING), finished_at=now())

    def forget(self, job_id: str, owner: str | None) -> None:
        """Delete the job's record and take it off every list (its results are deleted with it)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(*job_keys(job_id))
            pipe.zrem(JOB_LIST, job_id)
            if owner is not None:
                pipe.zrem(owner_list(owner), job_id)
            pipe.srem(LIVE_JOBS, job_id)
            pipe.execute()

    def ping(self) -> None:
        """Raise when Redis can't be reached (for readiness)."""
        self.redis.ping()


def redis_client(settings: Any, retry_seconds: float = 2) -> redis.Redis:
    """A client of the configured Redis that rides out connection errors for `retry_seconds`."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=3, retry=redis_retry(retry_seconds)
    )


def job_store(settings: Any, retry_seconds: float = 2) -> JobStore:
    """A JobStore on the configured Redis (workers pass their retry window; the API answers at once)."""
    client = redis_client(settings, retry_seconds)
    return JobStore(client, settings.job_record_days * 86400, settings.job_deadline_seconds)
