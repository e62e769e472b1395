"""Fairness benchmark (issue 19), on a local stack started here with one worker process:

one client submits a big job (192 filters of block5_conv1 at 64 px); one second later another client
(another loopback address: the API tells clients apart by address) submits a tiny one (2 filters of
block1_conv1, 2 steps). Printed: the tiny job's latency against its latency on an idle stack and
its own compute, against the big job's chunk duration; and the big job's slowdown against running
alone, with its seconds outside its chunks (what dispatch and the tiny job add; chunk compute
wanders with the machine's load). Rounds alternate alone / contended, so that drift hits both alike.

    python bench/fairness.py [--rounds 3]

Targets: the tiny job finishes within one chunk's duration plus its own compute; the big job's
slowdown is at most 5%.
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import requests
from requests.adapters import HTTPAdapter

from devstack.local import LocalStack, free_port

WEIGHTS = "random:0"
BIG_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 192}, "image_size": 64, "seed": 1}
TINY_JOB = {"layer": "block1_conv1", "filters": [0, 1], "steps": 2, "seed": 2}
ENDED = {"succeeded", "failed", "canceled"}


class FromAddress(HTTPAdapter):
    """Connects from a given loopback address (one client per address)."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        return super().init_poolmanager(*args, **kwargs)


def client(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def run_job(api: str, session: requests.Session, job: dict, poll_every: float = 0.1) -> tuple[float, dict]:
    """Submit and poll until the job ends: (seconds from submission to seeing it succeed, its manifest)."""
    started = time.perf_counter()
    job_id = session.post(f"{api}/v1/jobs", json=job, timeout=10).json()["id"]
    while (resource := session.get(f"{api}/v1/jobs/{job_id}", timeout=10).json())["status"] not in ENDED:
        time.sleep(poll_every)
    seconds = time.perf_counter() - started
    assert resource["status"] == "succeeded", resource
    return seconds, session.get(f"{api}/v1/jobs/{job_id}/manifest.json", timeout=10).json()


def chunk_seconds(manifest: dict) -> list[float]:
    return [chunk["seconds"] for chunk in manifest["timings"]["chunks"]]


def contended(api: str) -> tuple[float, float, dict]:
    """The big job from 127.0.0.1, the tiny one from 127.0.0.2 a second later: (big s, tiny s, big manifest)."""
    result: dict[str, tuple[float, dict]] = {}
    big = threading.Thread(target=lambda: result.update(big=run_job(api, client("127.0.0.1"), BIG_JOB, 0.5)))
    big.start()
    time.sleep(1)
    tiny_seconds, _ = run_job(api, client("127.0.0.2"), TINY_JOB, 0.05)
    big.join()
    return result["big"][0], tiny_seconds, result["big"][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS})
        try:
            stack.start_redis()
            stack.start_s3()
            stack.start_api()
            stack.start_worker("solo")
            api = stack.api_url
            run_job(api, client("127.0.0.1"), {**BIG_JOB, "filters": [0, 1]})  # warm both compiled steps
            run_job(api, client("127.0.0.1"), TINY_JOB)
            alone, shared, tiny_idle, tiny_busy, tiny_compute, chunks = [], [], [], [], [], []
            # the big job's seconds not spent in its chunks
            outside: dict[str, list[float]] = {"alone": [], "shared": []}
            for number in range(rounds):
                tiny_seconds, manifest = run_job(api, client("127.0.0.2"), TINY_JOB, 0.05)
                tiny_idle.append(tiny_seconds)
                tiny_compute.append(sum(chunk_seconds(manifest)))
                big_alone, big_manifest = run_job(api, client("127.0.0.1"), BIG_JOB, 0.5)
                alone.append(big_alone)
                big_shared, tiny_shared, shared_manifest = contended(api)
                outside["alone"].append(big_alone - sum(chunk_seconds(big_manifest)))
                outside["shared"].append(big_shared - sum(chunk_seconds(shared_manifest)))
                shared.append(big_shared)
                tiny_busy.append(tiny_shared)
                chunks += chunk_seconds(big_manifest)
                print(f"round {number + 1}: big alone {big_alone:.1f} s, with the tiny job {big_shared:.1f} s; "
                      f"tiny on an idle stack {tiny_seconds:.2f} s, after the big one {tiny_shared:.2f} s")  # fmt: skip
        finally:
            stack.stop_all()
    chunk = statistics.median(chunks)
    tiny = statistics.median(tiny_busy)
    slowdown = statistics.median(s / a - 1 for s, a in zip(shared, alone, strict=True))
    print(f"big job: 192 filters of block5_conv1 at 64 px, {len(chunks) // rounds} chunks of {chunk:.1f} s "
          f"(median); alone {statistics.median(alone):.1f} s, with the tiny job {statistics.median(shared):.1f} s: "
          f"slowdown {slowdown:+.1%} (target at most 5%)")  # fmt: skip
    # Chunk compute wanders with this machine's load; the time outside chunks is what dispatch adds.
    apart = {name: statistics.median(seconds) for name, seconds in outside.items()}
    print(f"big job, seconds outside its chunks (dispatch, finish, the tiny job; median): "
          f"alone {apart['alone']:.2f} s, with the tiny job {apart['shared']:.2f} s")  # fmt: skip
    print(f"tiny job: 2 filters of block1_conv1, 2 steps: compute {statistics.median(tiny_compute):.2f} s, "
          f"{statistics.median(tiny_idle):.2f} s end to end on an idle stack, {tiny:.2f} s submitted 1 s after "
          f"the big job (target: within one chunk {chunk:.1f} s + its own {statistics.median(tiny_idle):.2f} s = "
          f"{chunk + statistics.median(tiny_idle):.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
