"""A job's event stream (shared/job_events.py) on a real throwaway Valkey: the lifecycle tells it each
move, progress and stored filter in order; it is capped, expires with the job, resumes after an id,
and lets one frame a job through per interval whatever the number of workers."""

import time

import pytest

from shared import job_events
from shared.job_events import START, EventStream, is_event_id
from shared.jobs import job_keys
from shared.lifecycle import Lifecycle, Unit
from shared.spec import parse_spec
from shared.workers import publish
from tests.fakes import Heard, MemoryStorage, Sent

SPEC = parse_spec({"layer": "block1_conv1", "filters": [0, 1, 2, 3], "image_size": 32, "grid": {"n": 2}})


@pytest.fixture
def lifecycle(jobs):
    publish(jobs.redis, "host:1", {})
    return Lifecycle(jobs, MemoryStorage(), Sent(), lease_seconds=30, max_attempts=2, events=Heard())


def started(lifecycle: Lifecycle, unit: str, filters: list[int]) -> Unit:
    began = lifecycle.begin("job", unit, "host:1", lambda spec: "random:3", filters)
    assert isinstance(began, Unit), began
    return began


def test_the_lifecycle_tells_moves_progress_and_stored_filters_in_order(lifecycle):
    lifecycle.submit("job", SPEC, [[0, 1, 2, 3]], client="alice", owner=None)
    unit = started(lifecycle, "0", [0, 1, 2, 3])
    lifecycle.progress(unit, 2)
    lifecycle.stored("job", [{"index": 0, "loss": 1.5, "dead": False, "chunk": 0, "worker": "w"}])
    lifecycle.progress(unit, 4)
    lifecycle.fail(unit, "boom", "it broke")
    told = lifecycle.stream.read("job", START, block_ms=0)
    assert [(event.kind, event.data) for event in told] == [
        ("status", {"status": "queued", "code": None}),
        ("status", {"status": "running", "code": None}),
        ("progress", {"done": 2, "total": 4}),
        ("filters", {"filters": [{"index": 0, "loss": 1.5, "dead": False}]}),
        ("progress", {"done": 4, "total": 4}),
        ("status", {"status": "failed", "code": "boom"}),
    ]
    assert lifecycle.stream.last_id("job") == told[-1].id and all(is_event_id(event.id) for event in told)
    # Resuming after an event gives what came after it; the stream lives and dies with the job's record.
    assert [event.kind for event in lifecycle.stream.read("job", told[3].id, block_ms=0)] == ["progress", "status"]
    assert 0 < lifecycle.jobs.redis.ttl(job_keys("job").events) <= lifecycle.jobs.redis.ttl(job_keys("job").record)
    # Deleted, the job's stream stays gone: a chunk still stopping can't make it again.
    lifecycle.jobs.redis.delete(*job_keys("job"))
    lifecycle.progress(unit, 4)
    assert not lifecycle.jobs.redis.exists(job_keys("job").events)


def test_the_stream_is_capped_and_knows_when_a_readers_place_was_trimmed(jobs):
    stream = EventStream(jobs)
    stream.publish("job", job_events.PROGRESS, {"done": 0, "total": 1}, starts=True)
    first = stream.last_id("job")
    for step in range(3 * job_events.EVENTS_KEPT):
        stream.publish("job", job_events.FRAME, {"step": step})
    assert jobs.redis.xlen(job_keys("job").events) < 2 * job_events.EVENTS_KEPT
    assert not stream.holds("job", first)  # the reader must start again from the job's state
    assert stream.holds("job", stream.last_id("job"))
    assert stream.read("job", stream.last_id("job"), block_ms=10) == []


def test_one_frame_per_interval_per_job_across_workers(jobs):
    streams = [EventStream(jobs), EventStream(jobs)]  # two workers on one job
    assert [stream.frame_slot("job", 0.3) for stream in streams] == [True, False]
    assert streams[1].frame_slot("other", 0.3)  # another job has its own
    time.sleep(0.35)
    assert streams[1].frame_slot("job", 0.3)


@pytest.mark.parametrize(("text", "valid"), [("1700000000000-0", True), ("0-0", True), ("1-2-3", False),
                                             ("abc-1", False), ("", False), ("1" * 21 + "-0", False)])  # fmt: skip
def test_event_ids_are_checked(text, valid):
    assert is_event_id(text) is valid
