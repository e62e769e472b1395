"""The job lifecycle (shared/lifecycle.py) on a real throwaway Valkey, with no broker, worker or S3
server: what each move writes, which events it tells, and how a unit that should not run is skipped."""

import numpy as np
import pytest

import shared.lifecycle as lifecycle_module
from shared import cache
from shared.jobs import job_keys
from shared.keys import CLIENT_JOBS, lease_key
from shared.lifecycle import DONE, FINISH, Lifecycle, Skipped, Unit
from shared.manifest import MANIFEST_FILE
from shared.numerics import WeightsUnavailable
from shared.pictures import encode_png
from shared.spec import JobSpec, parse_spec
from shared.storage import job_key
from shared.workers import publish
from tests.fakes import Heard, MemoryStorage, Sent

WEIGHTS = "random:3"


def weights_of(spec: JobSpec) -> str:
    """The identity a worker with random:3 weights claims for any job."""
    return WEIGHTS


SPEC = parse_spec({"layer": "block1_conv1", "filters": [0, 1, 2, 3], "image_size": 32, "grid": {"n": 2}})


@pytest.fixture
def world(jobs):
    """A lifecycle with one live worker process (one slot), and what it sends, tells and stores."""
    publish(jobs.redis, "host:1", {})
    sent, heard, storage = Sent(), Heard(), MemoryStorage()
    lifecycle = Lifecycle(jobs, storage, sent, lease_seconds=30, max_attempts=2, events=heard)
    return lifecycle, sent, heard, storage


def started(lifecycle: Lifecycle, job_id: str, unit: str, filters: list[int] | None = None) -> Unit:
    began = lifecycle.begin(job_id, unit, "host:1", weights_of, filters)
    assert isinstance(began, Unit), began
    return began


def test_a_job_goes_from_submission_to_succeeded_telling_each_move_once(world):
    lifecycle, sent, heard, _ = world
    lifecycle.submit("job", SPEC, [[0, 1], [2, 3]], client="alice", owner=None)
    assert lifecycle.jobs.status("job") == "queued"
    assert sent.chunks == [("job", 0)]  # one slot: the other chunk waits in Redis

    first = started(lifecycle, "job", "0", [0, 1])
    assert lifecycle.jobs.status("job") == "running"
    assert lifecycle.begin("job", "0", "host:1", weights_of) == Skipped("held")  # a duplicate delivery
    assert lifecycle.chunk_done(first, finish_here=True) is False  # chunk 1 is still to come
    assert sent.chunks == [("job", 0), ("job", 1)]  # its slot went to the next chunk

    second = started(lifecycle, "job", "1", [2, 3])
    assert lifecycle.chunk_done(second, finish_here=True) is True  # the last: its task finishes the job
    finish = started(lifecycle, "job", FINISH)
    assert lifecycle.finish_done(finish, "2026-12-02T00:00:00Z") is True
    assert lifecycle.jobs.status("job") == "succeeded"
    assert lifecycle.begin("job", "1", "host:1", weights_of) == Skipped("succeeded")  # a late duplicate
    assert heard.moves == [("job", "running", None), ("job", "succeeded", None)]


def test_a_done_chunk_delivered_again_is_skipped_as_done(world):
    lifecycle, _, _, _ = world
    lifecycle.submit("job", SPEC, [[0, 1], [2, 3]], client="alice", owner=None)
    lifecycle.chunk_done(started(lifecycle, "job", "0", [0, 1]))
    assert lifecycle.begin("job", "0", "host:1", weights_of) == Skipped(DONE)


def test_the_finish_waits_for_every_chunk(world):
    lifecycle, _, _, _ = world
    lifecycle.submit("job", SPEC, [[0, 1], [2, 3]], client="alice", owner=None)
    lifecycle.chunk_done(started(lifecycle, "job", "0", [0, 1]))
    assert lifecycle.begin("job", FINISH, "host:1", weights_of) == Skipped("chunks not done")


def test_cancel_ends_the_job_once_and_its_units_are_skipped(world):
    lifecycle, _, heard, _ = world
    lifecycle.submit("job", SPEC, [[0, 1, 2, 3]], client="alice", owner=None)
    assert lifecycle.cancel("job") is True
    assert lifecycle.cancel("job") is False  # already ended: nothing moves, nothing is told
    assert lifecycle.begin("job", "0", "host:1", weights_of) == Skipped("canceled")
    assert heard.moves == [("job", "canceled", None)]


def test_a_unit_started_more_than_its_attempts_fails_its_job(world):
    lifecycle, _, heard, _ = world
    lifecycle.submit("job", SPEC, [[0, 1, 2, 3]], client="alice", owner=None)
    for _ in range(2):  # each start's process died: its lease is taken over
        started(lifecycle, "job", "0", [0, 1, 2, 3])
        lifecycle.jobs.redis.delete(lease_key("job", "0"))
    assert lifecycle.begin("job", "0", "host:1", weights_of) == Skipped("failed")
    job = lifecycle.jobs.get("job")
    assert job is not None and job.error is not None and job.error.code == "chunk_failed_repeatedly"
    assert heard.moves[-1] == ("job", "failed", "chunk_failed_repeatedly")


def test_a_worker_with_other_weights_fails_the_job_never_mixing_them(world):
    lifecycle, _, _, _ = world
    lifecycle.submit("job", SPEC, [[0, 1], [2, 3]], client="alice", owner=None)
    started(lifecycle, "job", "0", [0, 1])
    assert lifecycle.begin("job", "1", "host:1", lambda spec: "random:4", [2, 3]) == Skipped("failed")
    job = lifecycle.jobs.get("job")
    assert job is not None and job.error is not None and job.error.code == "weights_mismatch"


def test_a_worker_that_cannot_load_the_jobs_model_fails_it_with_a_code(world):
    lifecycle, _, heard, _ = world
    spec = parse_spec({"model": "resnet50", "layer": "conv2_block1_out", "filters": [0, 1], "image_size": 32})
    lifecycle.submit("job", spec, [[0, 1]], client="alice", owner=None)
    asked = []

    def weights(spec: JobSpec) -> str:
        asked.append(spec.model)
        raise WeightsUnavailable("resnet50 needs 90 MB of weights; this worker keeps 64 MB")

    assert lifecycle.begin("job", "0", "host:1", weights, [0, 1]) == Skipped("failed")
    job = lifecycle.jobs.get("job")
    assert asked == ["resnet50"]
    assert job is not None and job.error is not None and job.error.code == "weights_unavailable"
    assert "needs 90 MB" in job.error.message and heard.moves[-1] == ("job", "failed", "weights_unavailable")


def test_a_job_whose_every_filter_is_cached_succeeds_at_submission(world):
    lifecycle, sent, heard, storage = world
    hits = {}
    for index in SPEC.filters:
        digest = cache.entry_hash(SPEC, WEIGHTS, index)
        storage.put(cache.picture_key(digest), encode_png(np.full((32, 32, 3), index * 40, np.uint8)), "image/png")
        hits[index] = {"index": index, "loss": float(index), "dead": False, "revived": False, "cache": digest}
    lifecycle.submit("job", SPEC, [], client="alice", owner=None, hits=hits, hits_weights=WEIGHTS)
    assert lifecycle.jobs.status("job") == "succeeded"
    assert sent.chunks == []
    assert heard.moves == [("job", "running", None), ("job", "succeeded", None)]
    manifest = storage.get_json(job_key("job", MANIFEST_FILE))
    assert sorted(entry["index"] for entry in manifest["filters"]) == [0, 1, 2, 3]
    assert lifecycle.jobs.get("job").weights == WEIGHTS
    assert lifecycle.jobs.redis.hget(job_keys("job").progress, cache.HITS_PROGRESS) == b"4"


def test_delete_drops_the_record_and_the_results(world):
    lifecycle, _, _, storage = world
    lifecycle.submit("job", SPEC, [[0, 1, 2, 3]], client="alice", owner="alice")
    storage.put(job_key("job", "grid.png"), b"png", "image/png")
    lifecycle.cancel("job")
    lifecycle.delete("job")
    assert lifecycle.jobs.get("job") is None
    assert storage.objects == {}


def test_a_lease_counts_as_stale_once_unrenewed_for_stale_seconds(world):
    lifecycle, _, _, _ = world
    lifecycle.submit("job", SPEC, [[0, 1, 2, 3]], client="alice", owner=None)
    assert lifecycle.stale_in("job", "0") is None  # no lease: nobody holds it
    started(lifecycle, "job", "0", [0, 1, 2, 3])
    assert 4.0 < lifecycle.stale_in("job", "0") <= 5.0  # 30 s lease: stale once 5 s pass unrenewed
    lifecycle.jobs.redis.pexpire(lease_key("job", "0"), 24_000)  # 6 s without renewal
    assert lifecycle.stale_in("job", "0") == 0.0
    assert isinstance(lifecycle.begin("job", "0", "other:2", weights_of), Unit)  # taken over


def test_the_sweep_reads_live_jobs_in_batches_and_recovers_each(world, monkeypatch):
    monkeypatch.setattr(lifecycle_module, "SWEEP_BATCH", 2)  # five jobs: three batches
    lifecycle, _, heard, _ = world
    for number in range(5):
        lifecycle.submit(f"j{number}", SPEC, [[0, 1, 2, 3]], client="alice", owner=None)
    redis = lifecycle.jobs.redis
    lifecycle.cancel("j1")
    redis.delete(job_keys("j3").queued)  # Redis lost j3's queued chunk: it is nowhere
    redis.lrem(CLIENT_JOBS + "alice", 0, "j3")
    redis.hset(job_keys("j4").record, "deadline", "1")  # long past
    lifecycle.sweep()
    assert "j1" not in lifecycle.jobs.live()  # ended: no longer swept
    assert redis.lrange(job_keys("j3").queued, 0, -1) == [b"0"]  # queued again, and its client's turn has it
    assert b"j3" in redis.lrange(CLIENT_JOBS + "alice", 0, -1)
    assert lifecycle.jobs.get("j4").error.code == "deadline_exceeded"
    assert [lifecycle.jobs.status(f"j{number}") for number in (0, 2, 3)] == ["queued"] * 3
    assert ("j4", "failed", "deadline_exceeded") in heard.moves
