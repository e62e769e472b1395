"""Fair dispatch (shared/scheduling.py): a small job never waits behind a big one, clients share the
workers by compute, and a slot is never leaked.

The first tests drive the scheduler and the lifecycle's sweep on a real Redis, sending chunks to a
list instead of Celery; the last ones submit from two client addresses (127.0.0.1 and 127.0.0.2)
to a real stack with one worker process.
"""

import json
import time

import pytest
import requests

from devstack.addresses import session_from
from devstack.local import wait_until
from shared.celery_app import QUEUE, CeleryDispatch, create_celery
from shared.deliveries import publish_holdings, received
from shared.jobs import JobStore, job_keys
from shared.lifecycle import LOST_SECONDS, Lifecycle
from shared.scheduling import (
    IN_FLIGHT,
    RECENT_SECONDS,
    Scheduler,
    chunk_backlog,
    queue_position,
    queued_chunks,
)
from shared.settings import Settings
from shared.spec import parse_spec
from shared.workers import publish
from tests.fakes import Sent
from tests.service_helpers import get_job, running_stack, wait_for

ENDED = {"succeeded", "failed", "canceled"}
CHUNK_SIZE = 4


def create(
    jobs: JobStore, scheduler: Scheduler, name: str, client: str, chunks: int, gflop: float = 1, priority: int = 0
) -> str:
    """A queued job of `chunks` chunks of one filter each, `gflop` a filter, submitted by `client`."""
    spec = parse_spec({"layer": "block1_conv1", "filters": list(range(chunks)), "priority": priority})
    jobs.create(name, spec, chunks)
    scheduler.submit(name, client, [[i] for i in range(chunks)], gflop * 1e9, priority)
    return name


def run_next(scheduler: Scheduler, sent: Sent, count: int) -> list[str]:
    """Finish the chunk in flight (one slot), `count` times; the jobs whose chunks were sent meanwhile."""
    before = len(sent.chunks)
    for _ in range(count):
        job_id, index = sent.chunks[len(sent.chunks) - 1]
        scheduler.release(job_id, str(index), done=True)
    return [job_id for job_id, _ in sent.chunks[before:]]


def test_a_small_job_submitted_after_a_big_one_is_sent_next(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    create(jobs, scheduler, "big", "alice", chunks=20, gflop=50)
    assert sent.chunks == [("big", 0)]  # one worker process (or none yet): one slot
    create(jobs, scheduler, "small", "bob", chunks=1, gflop=0.1)
    assert sent.chunks == [("big", 0)]  # the slot is taken: the small job waits in Redis, not in the broker
    assert queued_chunks(jobs.redis) == 19 + 1
    assert run_next(scheduler, sent, 2) == ["small", "big"]


def test_a_chunk_that_yields_keeps_what_it_finished_and_the_rest_keeps_its_place(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    spec = parse_spec({"layer": "block1_conv1", "filters": list(range(8))})
    jobs.create("big", spec, 1)
    scheduler.submit("big", "alice", [list(range(8))], 10e9)  # one chunk of 8 filters, 10 GFLOP each
    create(jobs, scheduler, "small", "bob", chunks=1, gflop=0.1)
    assert sent.chunks == [("big", 0)] and scheduler.others_waiting("big") and not scheduler.others_waiting("small")
    charged = jobs.redis.get("filterviz:sched:served:alice")
    assert float(charged) == 80  # all 8 filters, when the chunk was sent

    assert scheduler.split("big", "0", kept=[0, 1, 2], rest=[3, 4, 5, 6, 7]) == 1
    units = jobs.redis.hgetall(job_keys("big").units)
    assert json.loads(units[b"plan:0"]) == [0, 1, 2] and json.loads(units[b"plan:1"]) == [3, 4, 5, 6, 7]
    assert jobs.get("big").chunks == 2 and jobs.redis.lrange(job_keys("big").queued, 0, -1) == [b"1"]
    # Charged for the 3 filters that ran: the 5 given back (50 GFLOP) are charged again when they are sent.
    assert jobs.redis.zscore("filterviz:sched:clients", "alice") == 30
    # The yielding chunk's slot goes to the other client's job first, then the rest of the big one.
    assert run_next(scheduler, sent, 2) == ["small", "big"] and sent.chunks[-1] == ("big", 1)


def test_clients_share_by_compute_and_a_clients_jobs_take_turns(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    create(jobs, scheduler, "a1", "alice", chunks=20)
    create(jobs, scheduler, "a2", "alice", chunks=20)
    create(jobs, scheduler, "b", "bob", chunks=20, gflop=2)  # chunks twice as costly as alice's
    picked = run_next(scheduler, sent, 12)
    assert picked.count("b") == 4 and picked.count("a1") == picked.count("a2") == 4
    assert [j for j in picked if j != "b"][:4] == ["a2", "a1", "a2", "a1"]


def test_priority_weighs_a_clients_share_without_starving_the_others(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    create(jobs, scheduler, "normal", "alice", chunks=30)
    create(jobs, scheduler, "urgent", "admin", chunks=30, priority=2)  # charged a quarter of its cost
    create(jobs, scheduler, "background", "bob", chunks=30, priority=-1)  # charged twice its cost
    run_next(scheduler, sent, 21)
    picked = [job_id for job_id, _ in sent.chunks]  # normal's first chunk, sent alone, included
    assert (picked.count("urgent"), picked.count("normal"), picked.count("background")) == (16, 4, 2)


def test_a_queued_jobs_position_counts_the_chunks_sent_before_its_next_one(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    create(jobs, scheduler, "big", "alice", chunks=6)
    assert queue_position(jobs.redis, "big").chunks_ahead == 0  # its chunk 1 goes next
    create(jobs, scheduler, "first", "bob", chunks=2, gflop=3)
    create(jobs, scheduler, "second", "bob", chunks=2, gflop=3)
    # bob's newest job goes first; alice's big job, at a third of the cost, sends 3 chunks per turn of
    # bob's (the last at a tie of scores, which alice wins by name).
    assert queue_position(jobs.redis, "second").chunks_ahead == 0
    assert queue_position(jobs.redis, "first").chunks_ahead == 1 + 3
    assert queue_position(jobs.redis, "first").estimated_start_seconds is None  # no chunk done yet
    run_next(scheduler, sent, 2)  # big:0 done (second:0 sent), then second:0 (big:1 sent)
    place = queue_position(jobs.redis, "first")
    assert place.chunks_ahead == 2  # big's chunks 2 and 3 (bob was charged for second:0)
    assert jobs.redis.llen(RECENT_SECONDS) == 2 and place.estimated_start_seconds is not None
    # Chunks of 20 s that yield after 5 s to waiting work: each ahead, and the running one, holds a slot
    # about a slice; without yielding, half a chunk is left of the running one.
    jobs.redis.delete(RECENT_SECONDS)
    jobs.redis.lpush(RECENT_SECONDS, 20.0, 20.0)
    assert queue_position(jobs.redis, "first").estimated_start_seconds == (2 + 0.5) * 20.0
    assert queue_position(jobs.redis, "first", slice_seconds=5).estimated_start_seconds == (2 + 1) * 5.0
    run_next(scheduler, sent, 7)  # every chunk sent, the last in flight: its job's is "next"
    assert queue_position(jobs.redis, sent.chunks[-1][0]).chunks_ahead == 0
    run_next(scheduler, sent, 1)
    assert queue_position(jobs.redis, "first") is None  # nothing of it waits any more


def test_the_autoscalers_backlog_is_not_zero_for_a_job_submitted_while_no_worker_exists(jobs):
    sent = Sent()
    create(jobs, Scheduler(jobs, sent), "one-chunk", "alice", chunks=1)  # no heartbeat: no worker at all
    assert sent.chunks == [("one-chunk", 0)] and queued_chunks(jobs.redis) == 0  # in the broker's one slot
    assert chunk_backlog(jobs.redis) == {"queued_chunks": 0, "in_flight_chunks": 1, "chunks": 1}


def test_slots_follow_the_live_worker_processes(jobs):
    sent = Sent()
    scheduler = Scheduler(jobs, sent)
    for pid in range(3):
        publish(jobs.redis, f"host:{pid}", {})
    create(jobs, scheduler, "big", "alice", chunks=20)
    assert [index for _, index in sent.chunks] == [0, 1, 2]


def test_an_ended_job_frees_its_slot_and_the_sweep_frees_and_requeues_what_was_lost(jobs):
    sent = Sent()
    lifecycle = Lifecycle(jobs, storage=None, dispatch=sent, lease_seconds=30, max_attempts=3)
    scheduler = Scheduler(jobs, sent)
    create(jobs, scheduler, "first", "alice", chunks=3)
    create(jobs, scheduler, "second", "bob", chunks=3)
    lifecycle.fail_job("first", "render_failed", "for the test")
    assert sent.chunks == [("first", 0), ("second", 0)]  # its slot went on at once
    assert not jobs.redis.exists(job_keys("first").queued)

    jobs.cancel("second")  # as the API cancels: no lifecycle call; the sweep finds the slot
    create(jobs, scheduler, "third", "carol", chunks=2)
    lifecycle.sweep()
    assert sent.chunks[-1] == ("third", 0)

    jobs.redis.zrem(IN_FLIGHT, "third:0")  # as if Redis lost the chunk's move
    lifecycle.sweep()
    assert sent.chunks[-1] == ("third", 0)  # queued again at the front, and sent to the free slot
    assert jobs.redis.zscore(IN_FLIGHT, "third:0") is not None


def test_a_chunk_in_flight_that_never_starts_is_sent_again(jobs):
    sent = Sent()
    lifecycle = Lifecycle(jobs, storage=None, dispatch=sent, lease_seconds=30, max_attempts=3)
    create(jobs, Scheduler(jobs, sent), "job", "alice", chunks=2)
    jobs.redis.zadd(IN_FLIGHT, {"job:0": 1.0})  # sent long ago; its message was lost
    lifecycle.sweep()
    assert sent.chunks == [("job", 0), ("job", 0)]
    lifecycle.sweep()  # sent again once, not at every sweep
    assert len(sent.chunks) == 2


def test_a_chunk_lost_on_its_way_to_a_worker_is_sent_again_at_the_next_sweep(jobs):
    """A worker that dies as it pops a message leaves it nowhere: not in the broker, never received."""
    sent = Sent()
    lifecycle = Lifecycle(jobs, storage=None, dispatch=sent, lease_seconds=30, max_attempts=3)
    create(jobs, Scheduler(jobs, sent), "job", "alice", chunks=2)
    jobs.redis.zadd(IN_FLIGHT, {"job:0": time.time() - LOST_SECONDS - 1})
    lifecycle.sweep()
    assert sent.chunks == [("job", 0)]  # still in the broker's queue: a worker will take it

    sent.taken.add("job:0")  # popped, by a worker that died before it recorded the receipt
    lifecycle.sweep()
    assert sent.chunks == [("job", 0), ("job", 0)]
    lifecycle.sweep()  # sent again once: the new message waits in the broker
    assert len(sent.chunks) == 2


def test_the_broker_says_which_units_wait_in_its_queue(jobs):
    """CeleryDispatch reads the Redis transport's own list: what it sent, until a worker pops it."""
    url = jobs.redis.connection_pool.connection_kwargs
    dispatch = CeleryDispatch(create_celery(Settings(redis_url=f"redis://127.0.0.1:{url['port']}/0")))
    dispatch.chunk("job", 3, [6, 7])
    dispatch.finish("other")
    jobs.redis.lpush(QUEUE, b"not a message of ours")
    assert dispatch.waiting() == {"job:3", "other:finish"}
    jobs.redis.rpop(QUEUE)  # the oldest, as a worker takes it
    assert dispatch.waiting() == {"other:finish"}


def test_a_chunk_a_live_worker_received_is_not_sent_again_by_the_lost_message_check(jobs):
    sent = Sent()
    lifecycle = Lifecycle(jobs, storage=None, dispatch=sent, lease_seconds=30, max_attempts=3)
    create(jobs, Scheduler(jobs, sent), "job", "alice", chunks=2)
    jobs.redis.zadd(IN_FLIGHT, {"job:0": time.time() - LOST_SECONDS - 1})
    sent.taken.add("job:0")
    received(jobs.redis, "job", "0", "host:1")
    publish_holdings(jobs.redis, "host:1", ["job:0"])  # it holds the message, waiting for a pool process
    lifecycle.sweep()
    assert sent.chunks == [("job", 0)]


# --- the real stack: one worker process ---------------------------------------------------------

# Six chunks of block5_conv1 at 32 px: each takes a second or more on one CPU worker.
BIG_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 24}, "image_size": 32, "steps": 20,
           "grid": {"n": 3, "margin": 1}, "seed": 3}  # fmt: skip
TINY_JOB = {"layer": "block1_conv1", "filters": [0, 1], "image_size": 32, "steps": 2,
            "grid": {"n": 2, "margin": 1}, "seed": 4}  # fmt: skip


def submit_as(session: requests.Session, api: str, job: dict) -> dict:
    response = session.post(f"{api}/v1/jobs", json=job, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("fair"), ["solo"], CHUNK_SIZE) as stack:
        yield stack.api_url


def test_a_tiny_job_after_a_big_one_from_another_client_finishes_while_the_big_one_runs(api):
    big = submit_as(session_from("127.0.0.1"), api, BIG_JOB)
    wait_until(lambda: get_job(api, big["id"])["status"] == "running", "big job running", 60)
    tiny = submit_as(session_from("127.0.0.2"), api, TINY_JOB)
    assert wait_for(api, tiny["id"], ENDED, timeout=60)["status"] == "succeeded"
    after = get_job(api, big["id"])
    assert after["status"] == "running" and after["progress"]["done"] <= 2 * CHUNK_SIZE
    assert wait_for(api, big["id"], ENDED, timeout=120)["status"] == "succeeded"


def test_two_clients_big_jobs_progress_together(api):
    first = submit_as(session_from("127.0.0.1"), api, {**BIG_JOB, "seed": 5})
    second = submit_as(session_from("127.0.0.2"), api, {**BIG_JOB, "seed": 6})
    # Queued, it says its place; the place only moves forward, and goes once it runs.
    assert second["status"] == "queued" and second["queue"]["chunks_ahead"] >= 0
    places = [second["queue"]["chunks_ahead"]]
    while (now := get_job(api, second["id"]))["status"] == "queued":
        places.append(now["queue"]["chunks_ahead"])
        assert now["queue"]["estimated_start_seconds"] >= 0  # the previous test's chunks are recent
    assert places == sorted(places, reverse=True) and now["queue"] is None
    assert wait_for(api, first["id"], ENDED, timeout=180)["status"] == "succeeded"
    behind = get_job(api, second["id"])
    # Served in turn: the second is at most the chunk then running behind (FIFO: not started yet).
    assert behind["progress"]["done"] >= behind["progress"]["total"] - CHUNK_SIZE
    assert wait_for(api, second["id"], ENDED, timeout=60)["status"] == "succeeded"
    manifest = requests.get(f"{api}/v1/jobs/{first['id']}/manifest.json", timeout=10).json()
    assert json.dumps(manifest["filters"])  # the jobs' results are whole


# --- a running chunk yields at a batch boundary ---------------------------------------------------

ONE_CHUNK = 32  # the big job is a single chunk: only yielding lets another client in before it ends


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    """One worker process; a chunk yields after 1 s (its batches sized to about that) when others wait."""
    env = {"FILTERVIZ_FAIR_SLICE_SECONDS": "1"}
    with running_stack(tmp_path_factory.mktemp("sliced"), ["solo"], ONE_CHUNK, env=env) as stack:
        yield stack


def test_a_running_chunk_yields_to_another_clients_job_and_keeps_its_place(sliced):
    api = sliced.api_url
    big = submit_as(session_from("127.0.0.1"), api, {**BIG_JOB, "seed": 7})
    wait_until(lambda: get_job(api, big["id"])["progress"]["done"] > 0, "the big job's first batch", 60)
    tiny = submit_as(session_from("127.0.0.2"), api, TINY_JOB)
    assert wait_for(api, tiny["id"], ENDED, timeout=60)["status"] == "succeeded"
    during = get_job(api, big["id"])
    assert during["status"] == "running" and during["progress"]["done"] < 24  # it went first, not after
    assert wait_for(api, big["id"], ENDED, timeout=180)["status"] == "succeeded"
    manifest = requests.get(f"{api}/v1/jobs/{big['id']}/manifest.json", timeout=10).json()
    assert sorted(entry["index"] for entry in manifest["filters"]) == list(range(24))  # each once
    assert len(manifest["timings"]["chunks"]) >= 2  # the chunk kept what it finished; the rest ran after
    assert "yields after" in (sliced.workdir / "solo.log").read_text()
