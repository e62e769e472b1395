"""GET /v1/jobs/{id}/events: a job followed as Server-Sent Events, instead of polling it.

A stream opens with the job's state (`status`, `progress`, the `filters` stored so far), then relays
the job's event stream (shared/job_events.py): moves, progress, stored filters and the live `frame`s
of running chunks. It ends with an `end` event once the job ends, at once for a job that has ended.
Every event carries the stream's id; `Last-Event-ID` resumes after it (what was trimmed away is
covered by the state sent first). Any stream closes after STREAM_SECONDS; the client reconnects
with its last id, as EventSource does by itself.

A stream holds one of gunicorn's threads while it is open (a sync WSGI server has no other way), so
each API process serves at most FILTERVIZ_EVENT_STREAMS at once (default: half of its
FILTERVIZ_API_THREADS, the rest left to polls and uploads); past that, 503 with Retry-After, and
clients poll GET /v1/jobs/{id} instead. /metrics counts the open ones. An idle stream costs a thread
blocked on Redis and a Redis connection: bench/streams.py measures polls beside 200 of them.
"""

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import Gauge
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from api.contract import Reply, documented, error
from api.errors import ApiError
from api.jobs import UNKNOWN_JOB, JobPath, stored_filters, visible_job, with_url
from api.services import current_services
from shared import job_events
from shared.job_events import EventStream, is_event_id
from shared.jobs import FINISHED

log = logging.getLogger(__name__)
events = Blueprint("events", __name__, url_prefix="/v1")

EVENT_STREAM = "text/event-stream"
END = "end"
# Below the Redis client's socket timeout (shared/jobs.py): a quiet stream sends a comment this often,
# which also tells a proxy that the connection is alive.
KEEPALIVE_MS = 3000
STREAM_SECONDS = 300
RECONNECT_MS = 1000
SLOTS = "filterviz.event_streams"  # app.extensions: the process' StreamSlots
OPEN_STREAMS = Gauge("filterviz_event_streams_open", "Event streams open, in all API processes",
                     multiprocess_mode="livesum")  # fmt: skip


class ServerSentEvent(BaseModel):
    """One event of the stream, as an SSE parser reads it: `data` is JSON whose shape `event` names
    (README, Live painting)."""

    event: str = Field("message", description="status, progress, filters, frame or end")
    data: str = Field("", description="the event's JSON")
    id: str | None = Field(None, description="what Last-Event-ID resumes after")
    retry: int | None = Field(None, description="milliseconds to wait before reconnecting")


class StreamSlots:
    """The streams one API process may hold open at once (each holds a thread), counted in /metrics."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = threading.BoundedSemaphore(count)

    def take(self) -> bool:
        """A slot for one more stream, if one is free."""
        if not self._free.acquire(blocking=False):
            return False
        OPEN_STREAMS.inc()
        return True

    def give_back(self) -> None:
        OPEN_STREAMS.dec()
        self._free.release()


def init_event_streams(app: Flask, count: int) -> None:
    """This process' slots for open streams, one per stream it may hold."""
    app.extensions[SLOTS] = StreamSlots(count)


@events.get("/jobs/<job_id>/events")
@documented("followJob", "The job as Server-Sent Events: its state, then its moves, progress, stored filters and "
            "live frames, until it ends (Last-Event-ID resumes)", path=JobPath, replies={
    200: Reply("An event stream (text/event-stream), each event as below", ServerSentEvent, media=EVENT_STREAM),
    **UNKNOWN_JOB,
    422: error("Last-Event-ID is not an id this stream gave"),
    503: error("Redis or storage unavailable, or this API process holds as many streams as it may: poll the job",
               retry=True),
})  # fmt: skip
def follow_job(job_id: str):
    """Open the job's event stream (bounded per process)."""
    after = request.headers.get("Last-Event-ID") or None
    if after is not None and not is_event_id(after):
        raise ApiError(422, "invalid_last_event_id", "Last-Event-ID: an id of this stream, like 1700000000000-0",
                       [{"field": "Last-Event-ID", "reason": "not an event id"}])  # fmt: skip
    services = current_services()
    stream = services.lifecycle.stream
    newest = stream.last_id(job_id)  # read before the state: what happens after it is relayed
    resource = visible_job(job_id)
    slots: StreamSlots = current_app.extensions[SLOTS]
    if not slots.take():  # before the storage read: a refusal costs no listing
        raise ApiError(503, "too_many_streams", f"this API process holds {slots.count} event streams, its most: "
                       f"poll GET /v1/jobs/{job_id}", retry_after=2)  # fmt: skip
    try:
        filters = stored_filters(resource)
    except BaseException:
        slots.give_back()
        raise
    body = _follow(stream, resource, filters, newest, after)
    response = Response(body, mimetype=EVENT_STREAM, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # Released however the stream ends, even when the client goes away before the first event.
    response.call_on_close(slots.give_back)
    return response


def _follow(
    stream: EventStream, resource: dict[str, Any], filters: list[dict[str, Any]], newest: str, after: str | None
) -> Iterator[str]:
    """The stream's text: the state as of `newest`, then the events after `after` (or `newest`)."""
    job_id, status = resource["id"], resource["status"]
    yield f"retry: {RECONNECT_MS}\n\n"
    code = (resource.get("error") or {}).get("code")
    yield _event(job_events.STATUS, {"status": status, "code": code}, newest)
    yield _event(job_events.PROGRESS, {"done": resource["progress"]["done"], "total": resource["progress"]["total"]},
                 newest)  # fmt: skip
    if filters:
        yield _event(job_events.FILTERS, {"filters": filters}, newest)
    if status in FINISHED:
        yield _event(END, {"status": status}, newest)
        return
    try:
        cursor = after if after is not None and stream.holds(job_id, after) else newest
        closes_at = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < closes_at:
            got = stream.read(job_id, cursor, KEEPALIVE_MS)
            if not got:
                yield ": keepalive\n\n"
            for event in got:
                cursor = event.id
                yield _event(event.kind, _relayed(resource, event), event.id)
                if event.kind == job_events.STATUS and event.data["status"] in FINISHED:
                    yield _event(END, {"status": event.data["status"]}, event.id)
                    return
    except RedisError:
        log.warning("job %s: its event stream ends early: Redis can't be read", job_id)


def _relayed(resource: dict[str, Any], event: job_events.Event) -> dict[str, Any]:
    """An event's data as clients get it: stored filters with their pictures' URLs."""
    if event.kind == job_events.FILTERS:
        return {"filters": [with_url(resource, entry) for entry in event.data["filters"]]}
    return event.data


def _event(kind: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
