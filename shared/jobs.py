"""The live job record in Redis: status, timestamps, error and progress, with atomic transitions.

The record answers while a job runs and for a while after; the manifest in storage is the
durable record of a finished job.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.spec import JobSpec

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED})

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

    @property
    def total(self) -> int:
        """Filters in the job."""
        return len(self.spec.filters)


class JobStore:
    """Job records in Redis."""

    def __init__(self, client: redis.Redis, record_seconds: int) -> None:
        self._redis = client
        self._record_seconds = record_seconds
        self._transition = client.register_script(_TRANSITION)

    @staticmethod
    def _key(job_id: str) -> str:
        return f"filterviz:job:{job_id}"

    @staticmethod
    def _progress_key(job_id: str) -> str:
        return f"filterviz:job:{job_id}:progress"

    def create(self, job_id: str, spec: JobSpec, chunks: int) -> None:
        """Record a new queued job."""
        created = now()
        with self._redis.pipeline() as pipe:
            pipe.hset(
                self._key(job_id),
                mapping={"status": QUEUED, "spec": spec.model_dump_json(), "created_at": created, "chunks": chunks},
            )
            pipe.expire(self._key(job_id), self._record_seconds)
            pipe.zadd("filterviz:jobs", {job_id: datetime.now(UTC).timestamp()})
            pipe.execute()

    def get(self, job_id: str) -> Job | None:
        """The job, or None when Redis has no record of it."""
        with self._redis.pipeline() as pipe:
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
        )

    def recent(self, limit: int) -> list[str]:
        """Ids of the most recently created jobs, newest first."""
        return [i.decode() for i in self._redis.zrevrange("filterviz:jobs", 0, limit - 1)]

    def status(self, job_id: str) -> str | None:
        """Just the status (cheap enough to ask between batches)."""
        value = self._redis.hget(self._key(job_id), "status")
        return value.decode() if value else None

    def claim_weights(self, job_id: str, weights: str) -> str:
        """Record which weights render this job, first worker wins; returns the recorded weights."""
        self._redis.hsetnx(self._key(job_id), "weights", weights)
        return self._redis.hget(self._key(job_id), "weights").decode()

    def set_chunk_progress(self, job_id: str, chunk_index: int, done: int) -> None:
        """Filters done in one chunk; set, not added, so a chunk that runs again counts once."""
        with self._redis.pipeline() as pipe:
            pipe.hset(self._progress_key(job_id), str(chunk_index), done)
            pipe.expire(self._progress_key(job_id), self._record_seconds)
            pipe.execute()

    def _move(self, job_id: str, to: str, sources: tuple[str, ...], **fields: str) -> bool:
        pairs = [item for field in fields.items() for item in field]
        return self._transition(keys=[self._key(job_id)], args=[to, len(sources), *sources, *pairs]) == 1

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
        """queued or running -> canceled; chunks check this before and between batches."""
        return self._move(job_id, CANCELED, (QUEUED, RUNNING), finished_at=now())

    def ping(self) -> None:
        """Raise when Redis can't be reached (for readiness)."""
        self._redis.ping()


def job_store(settings: Any) -> JobStore:
    """A JobStore on the configured Redis."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    return JobStore(client, settings.job_record_days * 86400)
