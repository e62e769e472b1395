"""Every job ends: faults caused for real (processes killed, servers stopped and restarted) on a
stack with the production lease and redelivery settings. Recovery must come from the leases and
the sweep (shared/lifecycle.py), not from the broker's two-hour visibility timeout.

The workers run tests/fault_worker.py, the worker's Celery app with hooks that only jobs with
POISON_SEED or PAUSE_SEED trigger.
"""

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
import redis
import requests

from devstack.local import S3_READER_KEY, S3_READER_SECRET, wait_until
from shared import cache
from shared.celery_app import QUEUE
from shared.deliveries import RECEIVED
from shared.jobs import job_keys, job_store
from shared.keys import lease_key
from shared.manifest import filter_file
from shared.spec import parse_spec
from shared.storage import Storage, job_key
from tests.conftest import TEST_WEIGHTS
from tests.service_helpers import get_job, running_stack, submit, wait_for

CHUNK_SIZE = 4
FAULT_APP = "tests.fault_worker"
POISON_SEED, PAUSE_SEED = 666, 777
# Two chunks of block5_conv1 at 64 px: each takes seconds, long enough to be caught mid-way.
SLOW_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 8}, "image_size": 64, "steps": 60,
            "grid": {"n": 3, "margin": 1}, "seed": 8}  # fmt: skip
FAST_JOB = {"layer": "block2_conv1", "filters": {"start": 0, "stop": 8}, "image_size": 32, "steps": 3,
            "grid": {"n": 3, "margin": 1}, "seed": 5}  # fmt: skip
ENDED = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"FILTERVIZ_TEST_POISON_SEED": str(POISON_SEED), "FILTERVIZ_TEST_PAUSE_SEED": str(PAUSE_SEED),
           # Room for a chunk to wait out a 30 s outage (production: 3600 s).
           "FILTERVIZ_CHUNK_TIME_LIMIT": "600"}  # fmt: skip
    with running_stack(tmp_path_factory.mktemp("faults"), ["alpha"], CHUNK_SIZE, FAULT_APP, env) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack):
    return stack.api_url


def redis_of(stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["REDIS_URL"])


def assert_every_filter_once(api: str, job_id: str, expected: list[int]) -> None:
    manifest = requests.get(f"{api}/v1/jobs/{job_id}/manifest.json", timeout=10).json()
    assert sorted(entry["index"] for entry in manifest["filters"]) == expected
    chunks = sorted(chunk["chunk"] for chunk in manifest["timings"]["chunks"])
    assert chunks == list(range(len(expected) // CHUNK_SIZE))


def stored_error(stack, job_id: str) -> str:
    """The failure's own message, as the job record keeps it (admins see it as `error.detail`)."""
    error = job_store(stack.settings).get(job_id).error
    assert error is not None
    return error.message


def log_mentions(stack, worker: str, words: str) -> int:
    return (stack.workdir / f"{worker}.log").read_text(errors="replace").count(words)


def lease_held(stack, job_id: str, chunk: int = 0) -> bool:
    return bool(redis_of(stack).exists(lease_key(job_id, str(chunk))))


def running(stack, api: str, job_id: str) -> bool:
    """The job's first chunk holds its lease, and the job says running."""
    return lease_held(stack, job_id) and get_job(api, job_id)["status"] == "running"


def test_a_whole_worker_killed_mid_chunk_is_replaced_within_a_minute(stack, api):
    job = submit(api, SLOW_JOB)
    wait_until(lambda: running(stack, api, job["id"]), "first chunk running", 60)
    stack.stop("alpha", signal.SIGKILL)  # parent and pool process together, as an OOM kill or a lost node
    stack.start_worker("alpha", app=FAULT_APP)

    final = wait_for(api, job["id"], ENDED, timeout=150)
    assert final["status"] == "succeeded", final["error"]
    assert final["progress"] == {"done": 8, "total": 8}
    assert_every_filter_once(api, job["id"], list(range(8)))
    listed = requests.get(f"{api}/v1/workers", timeout=10).json()
    assert listed["count"] == 1 and listed["workers"][0]["weights"] == TEST_WEIGHTS
    assert listed["workers"][0]["name"].startswith("alpha:")


def test_a_worker_stopped_mid_chunk_gives_the_chunk_back_and_leaves_the_list_at_once(stack, api):
    job = submit(api, {**SLOW_JOB, "seed": 9})
    wait_until(lambda: running(stack, api, job["id"]), "first chunk running", 60)
    stack.stop("alpha")  # SIGTERM to the worker, as `docker compose stop` or a rollout sends it

    # Its pool process stopped the chunk at its next step and gave it back: no lease left to lapse.
    assert log_mentions(stack, "alpha", "'stopped': 'worker stopping'") == 1
    assert not lease_held(stack, job["id"])
    # Its start isn't counted as an attempt: stops and rollouts never fail a job.
    assert redis_of(stack).hget(job_keys(job["id"]).units, "starts:0") == b"0"
    # And it withdrew: the API doesn't count it, nor key the cache by its weights, for LIVE_SECONDS.
    assert requests.get(f"{api}/v1/workers", timeout=10).json()["count"] == 0
    assert get_job(api, job["id"])["status"] == "running"

    stack.start_worker("alpha", app=FAULT_APP)
    final = wait_for(api, job["id"], ENDED, timeout=150)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))


@contextmanager
def pool_held(stack, worker: str) -> Iterator[None]:
    """The worker's pool processes stopped (SIGSTOP): its parent receives messages, none begins."""
    pool = psutil.Process(stack.processes[worker].pid).children(recursive=True)
    for process in pool:
        process.suspend()
    try:
        yield
    finally:
        for process in pool:
            if process.is_running():
                process.resume()


@contextmanager
def worker_frozen(stack, worker: str) -> Iterator[None]:
    """The whole worker stopped (SIGSTOP), its parent too: it takes no message from the broker."""
    parent = psutil.Process(stack.processes[worker].pid)
    frozen = [parent, *parent.children(recursive=True)]
    for process in frozen:
        process.suspend()
    time.sleep(2.5)  # its last blocking pop (1 s) lapses: the broker holds messages for nobody
    try:
        yield
    finally:
        for process in frozen:
            if process.is_running():
                process.resume()


def delivered_not_begun(stack, job_id: str) -> bool:
    return bool(redis_of(stack).hexists(RECEIVED, f"{job_id}:0"))


def test_a_chunk_delivered_to_a_worker_killed_before_it_begins_is_sent_again(stack, api):
    # PENDING_SECONDS (600 s) and the broker's visibility timeout would bring it back; the receipt does, in seconds.
    with pool_held(stack, "alpha"):
        job = submit(api, {**FAST_JOB, "seed": 31, "cache": False})
        wait_until(lambda: delivered_not_begun(stack, job["id"]), "chunk 0 delivered, not begun", 30)
        stack.stop("alpha", signal.SIGKILL)  # an OOM kill while loading, a node preempted
    stack.start_worker("alpha", app=FAULT_APP)
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))
    assert log_mentions(stack, "alpha", "was delivered to alpha:") == 1


def test_a_chunk_lost_between_the_broker_and_a_worker_is_sent_again(stack, api):
    """The Redis transport pops a message, then records it as unacked: a worker killed in between (the
    chaos bench caught one, at start-up) takes the message with it, unreceived. PENDING_SECONDS (600 s)
    would bring it back; the sweep sees it is nowhere and sends it again in seconds."""
    broker = redis_of(stack)
    with worker_frozen(stack, "alpha"):
        job = submit(api, {**FAST_JOB, "seed": 33, "cache": False})
        wait_until(lambda: broker.llen(QUEUE) > 0, "chunk 0 in the broker's queue", 30)
        assert broker.rpop(QUEUE) is not None  # what the dying worker's pop does
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))
    assert log_mentions(stack, "alpha", f"of job {job['id']} was lost on its way to a worker") == 1


def test_a_chunk_delivered_just_before_redis_is_killed_is_sent_again(stack, api):
    with pool_held(stack, "alpha"):
        job = submit(api, {**FAST_JOB, "seed": 32, "cache": False})
        wait_until(lambda: delivered_not_begun(stack, job["id"]), "chunk 0 delivered, not begun", 30)
        time.sleep(1.5)  # the append-only file is synced every second
        stack.stop("redis", signal.SIGKILL)
        stack.start_redis()  # from its append-only file, on the same port
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))


def test_s3_down_for_30_s_mid_chunk_and_during_the_finish(stack, api):
    job = submit(api, {**SLOW_JOB, "seed": PAUSE_SEED, "steps": 20})
    for step in ("store chunk", "finish"):
        wait_until(lambda step=step: log_mentions(stack, "alpha", f"fault hook: {step}") > 0, step, 90)
        stack.stop("s3", signal.SIGKILL)
        time.sleep(30)
        stack.start_s3()  # same data and port
    final = wait_for(api, job["id"], ENDED, timeout=120)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))


def test_a_pool_process_killed_in_its_inline_finish_is_finished_by_the_chunk_sent_again(stack, api):
    """Celery sends the killed process's chunk again at once; it finds itself done, and the finish, whose
    holder died, is taken over there instead of after its lease (FILTERVIZ_LEASE_SECONDS) runs out."""
    finishes = log_mentions(stack, "alpha", "fault hook: finish")
    job = submit(api, {**FAST_JOB, "filters": [0, 1, 2, 3], "seed": PAUSE_SEED, "cache": False, "steps": 2})
    wait_until(lambda: log_mentions(stack, "alpha", "fault hook: finish") > finishes, "the finish", 90)
    (pool,) = psutil.Process(stack.processes["alpha"].pid).children()
    pool.kill()
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], [0, 1, 2, 3])
    assert log_mentions(stack, "alpha", f"job {job['id']}: a chunk sent again found itself done") == 1


def test_a_picture_gone_before_the_finish_fails_the_job_naming_it(stack, api):
    # Two chunks: the finish runs where the last one ran and stitches that chunk's pictures from memory,
    # so a picture of each chunk goes; the other chunk's is read back, and found missing. (Filters no
    # other test renders with this seed: "cache": false still fills the cache.)
    finishes = log_mentions(stack, "alpha", "fault hook: finish")
    filters = list(range(8, 8 + 2 * CHUNK_SIZE))
    job = submit(api, {**FAST_JOB, "filters": filters, "seed": PAUSE_SEED, "cache": False})
    wait_until(lambda: log_mentions(stack, "alpha", "fault hook: finish") > finishes, "the finish", 90)
    gone = [job_key(job["id"], filter_file(filters[at])) for at in (2, CHUNK_SIZE + 2)]
    for key in gone:  # deleted by hand, or expired, before the finish
        assert Storage(stack.settings).delete_prefix(key) == 1
    final = wait_for(api, job["id"], ENDED, timeout=60)
    assert final["status"] == "failed"
    error = stored_error(stack, job["id"])
    assert final["error"]["code"] == "picture_missing" and any(key in error for key in gone), final["error"]


def test_a_cached_picture_gone_before_the_finish_is_rendered_again(stack, api):
    cached = {**FAST_JOB, "filters": [0, 1, 2, 3], "seed": PAUSE_SEED}
    assert wait_for(api, submit(api, cached)["id"], ENDED, timeout=90)["status"] == "succeeded"
    finishes = log_mentions(stack, "alpha", "fault hook: finish")
    job = submit(api, {**cached, "filters": list(range(8))})  # 0..3 hits, 4..7 a chunk
    wait_until(lambda: log_mentions(stack, "alpha", "fault hook: finish") > finishes, "the finish", 90)
    gone = cache.picture_key(cache.entry_hash(parse_spec(cached), TEST_WEIGHTS, 1))
    assert Storage(stack.settings).delete_prefix(gone) == 1
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    manifest = requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
    assert sorted(entry["index"] for entry in manifest["filters"]) == list(range(8))
    assert sorted(entry["index"] for entry in manifest["filters"] if "cache" in entry) == [0, 2, 3]
    assert requests.get(f"{api}/v1/jobs/{job['id']}/filters/1.png", timeout=10).status_code == 200


def test_redis_restarted_mid_job(stack, api):
    job = submit(api, {**SLOW_JOB, "seed": 10})
    wait_until(lambda: running(stack, api, job["id"]), "first chunk running", 60)
    stack.restart_redis()  # append-only: records, queue and leases come back
    final = wait_for(api, job["id"], ENDED, timeout=120)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))


def test_a_done_mark_redis_lost_is_found_again_in_storage(stack, api):
    job = submit(api, {**SLOW_JOB, "seed": PAUSE_SEED, "steps": 10})
    storage = Storage(stack.settings)
    wait_until(lambda: storage.get(f"jobs/{job['id']}/chunks/0.json") is not None, "chunk 0 stored", 60)
    redis_of(stack).srem(f"filterviz:job:{job['id']}:done", "0")  # as if Redis lost its last second
    final = wait_for(api, job["id"], ENDED, timeout=90)
    assert final["status"] == "succeeded", final["error"]
    assert_every_filter_once(api, job["id"], list(range(8)))
    assert log_mentions(stack, "alpha", f"chunk 0 of job {job['id']} has its record") == 1


def test_a_record_lives_from_its_last_change_and_the_list_drops_records_that_are_gone(stack, api):
    ahead = submit(api, {**SLOW_JOB, "filters": [0, 1, 2, 3], "seed": 15})  # keeps the worker busy
    job = submit(api, {**FAST_JOB, "seed": 11})
    client = redis_of(stack)
    record = f"filterviz:job:{job['id']}"
    client.expire(record, 100)  # as if it had waited in the queue for almost its whole lifetime
    assert get_job(api, job["id"])["status"] == "queued"
    assert wait_for(api, job["id"], ENDED, timeout=90)["status"] == "succeeded"
    assert client.ttl(record) > 7 * 86400 - 60  # renewed by its last change
    assert wait_for(api, ahead["id"], ENDED, timeout=60)["status"] == "succeeded"
    client.delete(record)  # as if it had expired
    listed = requests.get(f"{api}/v1/jobs", params={"limit": 100}, timeout=10).json()["jobs"]
    assert job["id"] not in [j["id"] for j in listed]
    assert client.zscore("filterviz:jobs", job["id"]) is None
    assert get_job(api, job["id"])["status"] == "succeeded"  # from its manifest


def test_a_poison_chunk_fails_its_job_after_three_attempts_and_spares_the_next(stack, api):
    poison = submit(api, {**FAST_JOB, "filters": [0, 1, 2, 3], "seed": POISON_SEED})  # one chunk
    beside = submit(api, {**FAST_JOB, "seed": 6})
    final = wait_for(api, poison["id"], ENDED, timeout=150)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "chunk_failed_repeatedly"
    assert "chunk 0" in final["error"]["message"] and "3 times" in final["error"]["message"]
    assert log_mentions(stack, "alpha", "fault hook: poison chunk") == 3
    assert wait_for(api, beside["id"], ENDED, timeout=60)["status"] == "succeeded"


@pytest.mark.parametrize("ending", ["canceled", "deadline_exceeded"])
def test_the_running_chunk_of_an_ended_job_stops_within_seconds(stack, api, ending):
    job = submit(api, {**SLOW_JOB, "filters": [0, 1, 2, 3], "steps": 200, "seed": 12})  # one chunk of ~15 s
    wait_until(lambda: running(stack, api, job["id"]), "chunk running", 60)
    if ending == "canceled":
        assert requests.delete(f"{api}/v1/jobs/{job['id']}", timeout=10).status_code == 200
    else:  # the deadline passes now
        redis_of(stack).hset(f"filterviz:job:{job['id']}", "deadline", f"{time.time():.3f}")
    wait_until(lambda: not lease_held(stack, job["id"]), "chunk stopped", 5)
    final = get_job(api, job["id"])
    assert final["progress"]["done"] == 0  # it stopped inside its one batch
    if ending == "canceled":
        assert final["status"] == "canceled"
    else:
        assert final["status"] == "failed" and final["error"]["code"] == "deadline_exceeded"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"FILTERVIZ_WEIGHTS": "/nonexistent/vgg16.weights.h5"},
         ["WeightsUnavailable: weights file /nonexistent/vgg16.weights.h5 does not exist"]),
        # A start that hangs (tests/fault_worker.py) ends at its deadline, its stacks in the log.
        ({"FILTERVIZ_TEST_HANG_AT_START": "1", "FILTERVIZ_START_SECONDS": "5"},
         ["TimeoutError: not started after 5 s", "most recent call first", "in start_process"]),
    ],
    ids=["bad weights", "a start that hangs"],
)  # fmt: skip
def test_a_worker_that_cannot_start_exits_non_zero_and_takes_no_task(stack, api, env, said):
    stack.stop("alpha")
    job = submit(api, {**FAST_JOB, "seed": 13, "cache": False})  # each case renders it
    broken = stack.spawn_worker("broken", app=FAULT_APP, env=env)
    assert broken.wait(timeout=120) != 0
    stack.processes.pop("broken")
    log = (stack.workdir / "broken.log").read_text()
    assert all(words in log for words in said), log[-3000:]
    assert get_job(api, job["id"])["status"] == "queued"
    units = redis_of(stack).hgetall(f"filterviz:job:{job['id']}:units")
    assert not [name for name in units if name.startswith(b"starts:")]  # no chunk was started
    # Its message went back to the queue, not into a dead worker's hands.
    stack.start_worker("alpha", app=FAULT_APP)
    assert wait_for(api, job["id"], ENDED, timeout=60)["status"] == "succeeded"


def test_a_chunk_that_storage_refuses_fails_its_job_with_storage_unavailable(stack, api):
    stack.stop("alpha")
    reader = {"S3_ACCESS_KEY_ID": S3_READER_KEY, "S3_SECRET_ACCESS_KEY": S3_READER_SECRET,
              "FILTERVIZ_RETRY_SECONDS": "5"}  # fmt: skip
    stack.spawn_worker("reader", env=reader)
    wait_until(lambda: log_mentions(stack, "reader", "ready: weights") > 0, "read-only worker", 120)
    job = submit(api, {**FAST_JOB, "seed": 14})
    final = wait_for(api, job["id"], ENDED, timeout=60)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "storage_unavailable"
    stored = stored_error(stack, job["id"])  # the owner's message has no internals; the record keeps them
    assert "AccessDenied" in stored or "Access Denied" in stored
