"""Fairness benchmark (issue 19), on a local stack started here with one worker process:

one client submits a big job (192 filters of block5_conv1 at 64 px); one second later another client
(another loopback address: the API tells clients apart by address) submits a tiny one (2 filters of
block1_conv1, 2 steps). Printed: the tiny job's latency against its latency on an idle stack and
its own compute, against the big job's chunk duration; and the big job's slowdown against running
alone, with its seconds outside its chunks (what dispatch and the tiny job add; chunk compute
wanders with the machine's load); and how long the tiny job's status polls took while it was queued
(the API then computes its place in the queue). Rounds alternate alone / contended, so that drift
hits both alike. First, on a Redis of its own, what computing a queued job's place costs a poll.
bench/service.py runs all this as its fairness round.

    python bench/fairness.py [--rounds 3]

Targets: the tiny job finishes within one batch of the big job's running chunk plus its own compute
(the chunk yields: FILTERVIZ_FAIR_SLICE_SECONDS); its estimated start is within 2x of its real wait;
the big job's slowdown is at most 5%.
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import redis
import requests

from devstack.addresses import session_from
from devstack.local import LocalStack, free_port
from shared.jobs import JobStore
from shared.scheduling import Scheduler, queue_position
from shared.spec import parse_spec

WEIGHTS = "random:0"
# "cache": false: every round renders (an identical job would otherwise be copied from the result cache).
BIG_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 192}, "image_size": 64, "seed": 1, "cache": False}
TINY_JOB = {"layer": "block1_conv1", "filters": [0, 1], "steps": 2, "seed": 2, "cache": False}
ENDED = {"succeeded", "failed", "canceled"}


def run_job(
    api: str, session: requests.Session, job: dict, poll_every: float = 0.1, queued_polls: list[float] | None = None,
    starts: list[tuple[float, float]] | None = None,
) -> tuple[float, dict]:  # fmt: skip
    """Submit and poll until the job ends: (seconds from submission to seeing it succeed, its manifest).
    The seconds of each poll answered while the job was queued (it says its place then) go to queued_polls;
    for a job queued behind others, its estimated start and the seconds it really waited go to starts."""
    started = time.perf_counter()
    submitted = session.post(f"{api}/v1/jobs", json=job, timeout=10).json()
    job_id, estimate = submitted["id"], (submitted.get("queue") or {}).get("estimated_start_seconds")
    waited = None
    while True:
        asked = time.perf_counter()
        resource = session.get(f"{api}/v1/jobs/{job_id}", timeout=10).json()
        if resource["status"] == "queued" and queued_polls is not None:
            queued_polls.append(time.perf_counter() - asked)
        if resource["status"] != "queued" and waited is None:
            waited = asked - started
            if starts is not None and estimate is not None:
                starts.append((estimate, waited))
        if resource["status"] in ENDED:
            break
        time.sleep(poll_every)
    seconds = time.perf_counter() - started
    assert resource["status"] == "succeeded", resource
    return seconds, session.get(f"{api}/v1/jobs/{job_id}/manifest.json", timeout=10).json()


def chunk_seconds(manifest: dict) -> list[float]:
    return [chunk["seconds"] for chunk in manifest["timings"]["chunks"]]


def contended(api: str, queued_polls: list[float], starts: list[tuple[float, float]]) -> tuple[float, float, dict]:
    """The big job from 127.0.0.1, the tiny one from 127.0.0.2 a second later: (big s, tiny s, big manifest)."""
    result: dict[str, tuple[float, dict]] = {}
    big = threading.Thread(target=lambda: result.update(big=run_job(api, session_from("127.0.0.1"), BIG_JOB, 0.5)))
    big.start()
    time.sleep(1)
    tiny_seconds, _ = run_job(api, session_from("127.0.0.2"), TINY_JOB, 0.05, queued_polls, starts)
    big.join()
    return result["big"][0], tiny_seconds, result["big"][1]


@dataclass
class Fairness:
    """What fairness_round measured: seconds per round (big alone / shared, tiny idle / busy), ..."""

    alone: list[float] = field(default_factory=list)
    shared: list[float] = field(default_factory=list)
    tiny_idle: list[float] = field(default_factory=list)
    tiny_busy: list[float] = field(default_factory=list)
    tiny_compute: list[float] = field(default_factory=list)
    chunks: list[float] = field(default_factory=list)  # the big job's chunk seconds, alone
    # the big job's seconds not spent in its chunks
    outside: dict[str, list[float]] = field(default_factory=lambda: {"alone": [], "shared": []})
    queued_polls: list[float] = field(default_factory=list)  # GET of the tiny job while queued
    starts: list[tuple[float, float]] = field(default_factory=list)  # the queued tiny job: (estimated, waited) s


def fairness_round(rounds: int) -> Fairness:
    """The measurements, on a stack of its own (one worker process), rounds alternating alone / contended."""
    measured = Fairness()
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS})
        try:
            stack.start_service(["solo"])
            api = stack.api_url
            run_job(api, session_from("127.0.0.1"), {**BIG_JOB, "filters": [0, 1]})  # warm both compiled steps
            run_job(api, session_from("127.0.0.1"), TINY_JOB)
            for number in range(rounds):
                tiny_seconds, manifest = run_job(api, session_from("127.0.0.2"), TINY_JOB, 0.05)
                measured.tiny_idle.append(tiny_seconds)
                measured.tiny_compute.append(sum(chunk_seconds(manifest)))
                big_alone, big_manifest = run_job(api, session_from("127.0.0.1"), BIG_JOB, 0.5)
                measured.alone.append(big_alone)
                big_shared, tiny_shared, shared_manifest = contended(api, measured.queued_polls, measured.starts)
                measured.outside["alone"].append(big_alone - sum(chunk_seconds(big_manifest)))
                measured.outside["shared"].append(big_shared - sum(chunk_seconds(shared_manifest)))
                measured.shared.append(big_shared)
                measured.tiny_busy.append(tiny_shared)
                measured.chunks += chunk_seconds(big_manifest)
                print(f"round {number + 1}: big alone {big_alone:.1f} s, with the tiny job {big_shared:.1f} s; "
                      f"tiny on an idle stack {tiny_seconds:.2f} s, after the big one {tiny_shared:.2f} s")  # fmt: skip
        finally:
            stack.stop_all()
    return measured


def report(measured: Fairness, rounds: int) -> None:
    """Print the small job's latency against its compute, and the big job's slowdown."""
    chunk = statistics.median(measured.chunks)
    tiny = statistics.median(measured.tiny_busy)
    tiny_idle = statistics.median(measured.tiny_idle)
    slowdown = statistics.median(s / a - 1 for s, a in zip(measured.shared, measured.alone, strict=True))
    print(f"big job: 192 filters of block5_conv1 at 64 px, {len(measured.chunks) // rounds} chunks of {chunk:.1f} s "
          f"(median); alone {statistics.median(measured.alone):.1f} s, with the tiny job "
          f"{statistics.median(measured.shared):.1f} s: slowdown {slowdown:+.1%} (target at most 5%)")  # fmt: skip
    # Chunk compute wanders with this machine's load; the time outside chunks is what dispatch adds.
    apart = {name: statistics.median(seconds) for name, seconds in measured.outside.items()}
    print(f"big job, seconds outside its chunks (dispatch, finish, the tiny job; median): "
          f"alone {apart['alone']:.2f} s, with the tiny job {apart['shared']:.2f} s")  # fmt: skip
    compute = statistics.median(measured.tiny_compute)
    print(f"tiny job: 2 filters of block1_conv1, 2 steps: compute {compute:.2f} s, {tiny_idle:.2f} s end to end "
          f"on an idle stack, {tiny:.2f} s submitted 1 s after the big job (target 10 s: the running chunk "
          f"yields after its slice; without that, one chunk {chunk:.1f} s + its own {tiny_idle:.2f} s)")  # fmt: skip
    for estimated, waited in measured.starts:
        ratio = max(estimated, waited) / max(min(estimated, waited), 0.1)
        print(f"the tiny job's estimated start {estimated:.1f} s, its real wait {waited:.1f} s: {ratio:.1f}x apart "
              f"(target within 2x)")  # fmt: skip
    if measured.queued_polls:
        polls = sorted(measured.queued_polls)
        print(f"status polls of the queued tiny job (its place computed; Python client): {len(polls)}, "
              f"median {1000 * statistics.median(polls):.1f} ms, max {1000 * polls[-1]:.1f} ms")  # fmt: skip


class _Nowhere:
    """A Dispatch that sends nothing (position_cost needs only the queues)."""

    def chunk(self, job_id: str, index: int, filters: list[int]) -> None:
        """Nothing."""

    def finish(self, job_id: str) -> None:
        """Nothing."""

    def waiting(self) -> set[str]:
        """Nothing waits."""
        return set()


def position_cost(clients: int = 10, jobs_each: int = 5, calls: int = 2000) -> None:
    """Print what a queued job's place costs a status poll (shared/scheduling.py queue_position),
    against the job record's read that every poll does, with clients x jobs_each jobs queued."""
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir))
        try:
            stack.start_redis()
            redis_client = redis.Redis.from_url(stack.env["REDIS_URL"])
            jobs = JobStore(redis_client, 3600)
            scheduler = Scheduler(jobs, _Nowhere())
            spec = parse_spec({"layer": "block1_conv1", "filters": list(range(20))})
            for number in range(clients * jobs_each):
                jobs.create(f"job{number}", spec, 20)
                scheduler.submit(f"job{number}", f"client{number % clients}", [[i] for i in range(20)], 1e9)
            last = f"job{clients * jobs_each - 1}"
            for label, call in [("the job record", lambda: jobs.get(last)),
                                ("its place", lambda: queue_position(redis_client, last))]:  # fmt: skip
                seconds = []
                for _ in range(calls):
                    started = time.perf_counter()
                    call()
                    seconds.append(time.perf_counter() - started)
                seconds.sort()
                median, p99 = 1000 * statistics.median(seconds), 1000 * seconds[len(seconds) * 99 // 100]
                print(f"reading {label} ({clients * jobs_each} jobs of {clients} clients queued): "
                      f"median {median:.3f} ms, p99 {p99:.3f} ms")  # fmt: skip
        finally:
            stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    position_cost()
    report(fairness_round(rounds), rounds)


if __name__ == "__main__":
    main()
