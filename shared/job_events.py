"""A job's events, in order, for GET /v1/jobs/{id}/events: a Redis Stream beside the job's record
(JobKeys.events), renewed and expiring with it.

Kinds (`KINDS`): `status` (a move, with its error code), `progress` (filters done, of the total),
`filters` (entries just stored: index, loss, dead) and `frame` (the running batch's pictures while
they form). The stream is capped at about EVENTS_KEPT entries, so frames can't grow it without
bound: a reader that falls far behind misses the oldest frames, never the job's state, which the API
sends first on every connect. Frames are bounded per job, whatever the number of workers on it, by
a slot in Redis (`frame_slot`). Publishing is best effort: its trouble never fails the job.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

from shared.jobs import JobStore, job_keys
from shared.keys import FRAME_SLOT

log = logging.getLogger(__name__)

STATUS, PROGRESS, FILTERS, FRAME = "status", "progress", "filters", "frame"
KINDS = (STATUS, PROGRESS, FILTERS, FRAME)
EVENTS_KEPT = 1000
# The oldest id of any stream: reading after it reads the whole stream.
START = "0-0"


@dataclass(frozen=True)
class Event:
    """One entry of a job's stream: its id (the stream's, which `Last-Event-ID` sends back), kind and data."""

    id: str
    kind: str
    data: dict[str, Any]


class EventStream:
    """Publishes and reads jobs' event streams."""

    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs
        self._redis = jobs.redis

    def publish(self, job_id: str, kind: str, data: dict[str, Any], starts: bool = False) -> None:
        """Append an event, renewing the job's lifetime; a Redis error is logged, not raised. Only the
        event that `starts` the stream (the submission's) makes it: after a job is deleted, a chunk
        still stopping can't bring its stream back."""
        try:
            with self._redis.pipeline() as pipe:
                fields = {"kind": kind, "data": json.dumps(data, separators=(",", ":"))}
                pipe.xadd(job_keys(job_id).events, fields, maxlen=EVENTS_KEPT, approximate=True,
                          nomkstream=not starts)  # fmt: skip
                self._jobs.touch(pipe, job_id)
                pipe.execute()
        except Exception:
            log.exception("job %s: a %s event was lost", job_id, kind)

    def frame_slot(self, job_id: str, interval_seconds: float) -> bool:
        """Whether the job may show a frame now: at most one per `interval_seconds`, across all its workers."""
        try:
            return bool(self._redis.set(FRAME_SLOT + job_id, 1, nx=True, px=max(1, round(interval_seconds * 1000))))
        except Exception:
            return False

    def last_id(self, job_id: str) -> str:
        """The id of the newest event (START when there is none): what a reader has seen once it has
        read the job's state."""
        newest = self._redis.xrevrange(job_keys(job_id).events, count=1)
        return newest[0][0].decode() if newest else START

    def holds(self, job_id: str, event_id: str) -> bool:
        """Whether the stream still holds the event `event_id` or older: then nothing after it was trimmed."""
        oldest = self._redis.xrange(job_keys(job_id).events, count=1)
        return bool(oldest) and _ordered(oldest[0][0].decode()) <= _ordered(event_id)

    def read(self, job_id: str, after: str, block_ms: int) -> list[Event]:
        """The events after `after`, waiting up to `block_ms` for the first one (an empty list then)."""
        answer = self._redis.xread({job_keys(job_id).events: after}, count=100, block=block_ms)
        return [
            Event(entry_id.decode(), fields[b"kind"].decode(), json.loads(fields[b"data"]))
            for _, entries in answer or []
            for entry_id, fields in entries
        ]


def _ordered(event_id: str) -> tuple[int, int]:
    milliseconds, sequence = event_id.split("-")
    return int(milliseconds), int(sequence)


def is_event_id(text: str) -> bool:
    """Whether `text` is a stream id, as Last-Event-ID sends one back."""
    parts = text.split("-")
    return len(parts) == 2 and all(part.isdigit() and len(part) <= 20 for part in parts)
