"""Service benchmark, on a local stack started here (Redis, SeaweedFS S3, Celery workers, gunicorn):

1. overhead: a 16-filter, 64 px, 20-step job through API, queue and storage vs the engine alone;
2. status polls: p50 / p99 latency of GET /v1/jobs/<id> with 32 concurrent clients (wrk);
3. scaling: wall time of 20 small jobs with 1 worker vs 2 workers, each limited to one CPU thread.

    python bench/service.py
"""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import requests

from devstack.local import LocalStack, free_port
from shared.settings import Settings
from shared.spec import parse_spec

WEIGHTS = "random:0"
OVERHEAD_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 16}, "image_size": 64, "steps": 20, "seed": 1}
SMALL_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 4}, "image_size": 64, "steps": 10, "seed": 2}
POLL_CLIENTS, POLL_SECONDS = 32, 10
# This machine's timings wander by tens of percent from run to run: report medians of a few rounds.
ROUNDS = 3
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def engine_seconds(job: dict) -> list[float]:
    """The same job's ascent and deprocessing in this process, warm, without any service, ROUNDS times."""
    from worker.loading import load_engine, pick_batch_size
    from worker.render import render_filters

    settings = Settings()
    loaded = load_engine(WEIGHTS, settings)
    spec = parse_spec(job)
    batch = pick_batch_size(spec, len(spec.filters), settings)
    render_filters(loaded.engine, spec, spec.filters, batch_size=batch)  # warm: tracing happens here
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        render_filters(loaded.engine, spec, spec.filters, batch_size=batch)
        timings.append(time.perf_counter() - started)
    return timings


def run_job(api: str, job: dict, session: requests.Session, poll_every: float = 0.01) -> dict:
    job_id = session.post(f"{api}/v1/jobs", json=job, timeout=10).json()["id"]
    while True:
        resource = session.get(f"{api}/v1/jobs/{job_id}", timeout=10).json()
        if resource["status"] in {"succeeded", "failed", "canceled"}:
            assert resource["status"] == "succeeded", resource
            return resource
        time.sleep(poll_every)


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * _WRK_UNITS[unit]


def poll_latencies(url: str) -> dict[str, float]:
    """wrk's latency percentiles for GET url from POLL_CLIENTS keep-alive connections.

    wrk is a separate C process: a Python client on these 2 cores would add its own GIL waits
    to what it measures.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench/service.py needs wrk: `make bench` installs it (apt-get install wrk)")
    command = [wrk, "-t2", f"-c{POLL_CLIENTS}", f"-d{POLL_SECONDS}s", "--latency", url]
    subprocess.run([*command[:-2], "-d2s", url], check=True, capture_output=True)  # warm every API process
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    found = dict(re.findall(r"^\s*(50|99|Requests/sec:)%?\s+(\S+)", output, re.MULTILINE))
    return {"p50": _wrk_ms(found["50"]), "p99": _wrk_ms(found["99"]), "rate": float(found["Requests/sec:"])}


def wall_time_of_jobs(api: str, count: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        # Clients poll calmly here: the workers, not the pollers, should have the CPU.
        jobs = [{**SMALL_JOB, "seed": seed} for seed in range(count)]
        list(pool.map(lambda job: run_job(api, job, requests.Session(), poll_every=0.5), jobs))
    return time.perf_counter() - started


def main() -> None:
    engine = statistics.median(engine_seconds(OVERHEAD_JOB))
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS})
        try:
            stack.start_redis()
            stack.start_s3()
            stack.start_api()
            stack.start_worker("w1")
            session = requests.Session()
            run_job(stack.api_url, OVERHEAD_JOB, session)  # warm the worker's compiled step
            runs = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                # Polls every 50 ms: often enough to see the end, rarely enough not to slow the worker down.
                finished = run_job(stack.api_url, OVERHEAD_JOB, session, poll_every=0.05)
                runs.append(time.perf_counter() - started)
            end_to_end = statistics.median(runs)
            overhead = end_to_end - engine
            print(
                f"1. 16 filters, 64 px, 20 steps (medians of {ROUNDS}): engine {engine:.2f} s, "
                f"end to end {end_to_end:.2f} s, overhead {overhead:.2f} s = {overhead / engine:.1%} of engine time"
            )

            rounds = [poll_latencies(f"{stack.api_url}/v1/jobs/{finished['id']}") for _ in range(ROUNDS)]
            each = ", ".join(f"p50 {r['p50']:.1f} / p99 {r['p99']:.1f} ms at {r['rate']:.0f}/s" for r in rounds)
            p99 = statistics.median(r["p99"] for r in rounds)
            print(f"2. status polls of a finished job, {POLL_CLIENTS} concurrent clients (wrk, {ROUNDS} x "
                  f"{POLL_SECONDS} s): {each}; median p99 {p99:.1f} ms")  # fmt: skip
            stack.stop("w1")

            stack.extra_env.update({"FILTERVIZ_TF_THREADS": "1", "OMP_NUM_THREADS": "1"})
            stack.start_worker("single")
            wall_time_of_jobs(stack.api_url, 2)  # warm
            one = wall_time_of_jobs(stack.api_url, 20)
            stack.start_worker("second")
            wall_time_of_jobs(stack.api_url, 2)  # warm the new worker too
            two = wall_time_of_jobs(stack.api_url, 20)
            print(f"3. 20 small jobs (4 filters, 64 px, 10 steps), one CPU thread per worker: "
                  f"1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio {two / one:.2f}")  # fmt: skip
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
