"""Service benchmark, on a local stack started here (Redis, SeaweedFS S3, Celery workers, gunicorn):

1. overhead: a 16-filter, 64 px, 20-step job through API, queue and storage vs the engine alone;
2. status polls: p50 / p99 latency of GET /v1/jobs/<id> with 32 concurrent clients (wrk);
3. scaling: wall time of 20 small jobs with 1 worker vs 2 workers, each limited to one CPU thread;
4. abuse: one client polls a job's status while 32 others (wrk) send the most expensive invalid
   submissions we know; its p99 against its p99 on a quiet stack, and whether any API process was
   restarted. Run with the default admission settings, then with the rate limit off (every
   abusive request parsed and validated);
5. fairness (issue 19): bench/fairness.py's round on a one-worker stack of its own: a big job,
   then a tiny one from another client; the tiny job's latency against its compute time, the big
   job's slowdown, and the queued tiny job's status polls;
6. throughput of tiny jobs: 1,000 one-step jobs (one filter, 32 px, uncached) submitted at once to a
   stack of its own with one worker and admission opened; the wall time until every one succeeded,
   and what that leaves per job besides its compute.

    python -m bench.service [--only fairness|throughput] [--fairness-rounds 3] [--tiny-jobs 1000]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import requests

from bench.fairness import fairness_round, position_cost
from bench.fairness import report as report_fairness
from devstack.local import LocalStack, free_port
from shared.settings import Settings
from shared.spec import parse_spec

WEIGHTS = "random:0"
OVERHEAD_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 16}, "image_size": 64, "steps": 20, "seed": 1}
SMALL_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 4}, "image_size": 64, "steps": 10, "seed": 2}
TINY_JOB = {"layer": "block1_conv1", "filters": [0], "image_size": 32, "steps": 1, "grid": {"n": 1, "margin": 0},
            "cache": False, "seed": 3}  # fmt: skip
POLL_CLIENTS, POLL_SECONDS = 32, 10
ABUSERS, ABUSE_SECONDS = 32, 10
# Rounds 1-3 submit many jobs from one address: admission opened for them (round 4 restores it).
OPEN_ADMISSION = {"FILTERVIZ_MAX_ACTIVE_JOBS_PER_CLIENT": "1000", "FILTERVIZ_SUBMIT_RATE_LIMIT": "off"}
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
    latency = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if latency is None:
        raise ValueError(f"wrk printed a latency this doesn't read: {value!r}")
    number, unit = latency.groups()
    return float(number) * _WRK_UNITS[unit]


def _wrk() -> str:
    """wrk's path; SystemExit says how to get it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench/service.py needs wrk: `make bench` installs it (apt-get install wrk)")
    return wrk


def poll_latencies(url: str) -> dict[str, float]:
    """wrk's latency percentiles for GET url from POLL_CLIENTS keep-alive connections.

    wrk is a separate C process: a Python client on these 2 cores would add its own GIL waits
    to what it measures.
    """
    command = [_wrk(), "-t2", f"-c{POLL_CLIENTS}", f"-d{POLL_SECONDS}s", "--latency", url]
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


def abusive_bodies() -> list[str]:
    """The most expensive invalid submissions we know: each is read, parsed and validated in full."""
    near_limit = 60 * 1024
    return [
        # A body just under the size limit: 20000 indexes to parse, then refused (too many).
        json.dumps({"filters": [7] * 20000})[:near_limit].rsplit(",", 1)[0] + "]}",
        # Nested just under the parser's depth limit, then refused (not an object).
        "[" * 190 + "]" * 190,
        # Nested far beyond it (400 after 200 levels).
        "[" * 30000,
        # The range that used to build a list of 2.3 billion ints.
        '{"filters": {"start": 0, "stop": 2336070789}}',
        # A 4000-digit number.
        '{"steps": ' + "9" * 4000 + "}",
        # A long layer name, among valid fields.
        json.dumps({"layer": "x" * 50000, "image_size": 64, "steps": 20}),
        # Valid in every field, but 228 times the compute budget.
        json.dumps({"layer": "block5_conv3", "filters": {"start": 0, "stop": 512}, "image_size": 512,
                    "steps": 200, "grid": {"n": 16, "margin": 64}}),
        # Just over the body limit (413).
        json.dumps({"filters": [1] * 40000}),
    ]  # fmt: skip


_ABUSE_SCRIPT = """
bodies = {%s}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {}; n = 0 end
function request()
  n = n %% #bodies + 1
  return wrk.format("POST", "/v1/jobs", {["Content-Type"] = "application/json"}, bodies[n])
end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + count end
  end
  for status, count in pairs(total) do io.write(string.format("status %%d %%d\\n", status, count)) end
end
"""


def poll_for(session: requests.Session, url: str, seconds: float) -> list[float]:
    """One client's status polls, back to back, for `seconds`: each latency in ms."""
    latencies = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        assert session.get(url, timeout=10).status_code == 200
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def polls_under_flood(session: requests.Session, poll_url: str, flood: list[str]) -> tuple[list[float], str]:
    """The client's poll latencies while the wrk command `flood` runs; and wrk's report."""
    wrk = subprocess.Popen(flood, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let the flood start
    latencies = poll_for(session, poll_url, ABUSE_SECONDS - 1)
    return latencies, wrk.communicate()[0]


class AbuseRound(TypedDict):
    """One abuse_round: p99s in ms, poll counts (quiet, abused), the abusers' rate and statuses."""

    quiet_p99: float
    abused_p99: float
    healthz_flood_p99: float
    polls: tuple[int, int]
    abuse_rate: float
    abuse_p99: float
    statuses: dict[int, int]
    restarted: int


def abuse_round(stack: LocalStack, poll_url: str, workdir: Path) -> AbuseRound:
    """The normal client's p99 quiet; while ABUSERS wrk connections send abusive_bodies(); and, for
    scale, while as many connections ask for /healthz, the cheapest request there is."""
    script = workdir / "abuse.lua"
    script.write_text(_ABUSE_SCRIPT % ", ".join(f"[==[{body}]==]" for body in abusive_bodies()))
    wrk = [_wrk(), "-t2", f"-c{ABUSERS}", f"-d{ABUSE_SECONDS}s", "--latency"]
    session = requests.Session()
    poll_for(session, poll_url, 2)  # warm
    booted = (stack.workdir / "api.log").read_text().count("Booting worker")
    quiet = poll_for(session, poll_url, ABUSE_SECONDS)
    abused, output = polls_under_flood(session, poll_url, [*wrk, "-s", str(script), f"{stack.api_url}/v1/jobs"])
    cheapest, _ = polls_under_flood(session, poll_url, [*wrk, f"{stack.api_url}/healthz"])
    log = (stack.workdir / "api.log").read_text()
    found = dict(re.findall(r"^\s*(99|Requests/sec:)%?\s+(\S+)", output, re.MULTILINE))
    return {
        "quiet_p99": p99(quiet),
        "abused_p99": p99(abused),
        "healthz_flood_p99": p99(cheapest),
        "polls": (len(quiet), len(abused)),
        "abuse_rate": float(found["Requests/sec:"]),
        "abuse_p99": _wrk_ms(found["99"]),
        "statuses": dict(sorted((int(k), int(v)) for k, v in re.findall(r"^status (\d+) (\d+)", output, re.M))),
        "restarted": log.count("Booting worker") - booted + log.count("WORKER TIMEOUT"),
    }


def report_abuse(label: str, rounds: list[AbuseRound]) -> None:
    for r in rounds:
        print(f"   {label}: poll p99 quiet {r['quiet_p99']:.1f} ms, under abuse {r['abused_p99']:.1f} ms "
              f"({r['abused_p99'] / r['quiet_p99']:.2f}x), under a /healthz flood {r['healthz_flood_p99']:.1f} ms "
              f"({r['healthz_flood_p99'] / r['quiet_p99']:.2f}x); polls {r['polls'][0]} quiet, {r['polls'][1]} abused; "
              f"abusers {r['abuse_rate']:.0f} req/s, their p99 {r['abuse_p99']:.1f} ms, statuses {r['statuses']}; "
              f"API processes restarted: {r['restarted']}")  # fmt: skip
    ratio = statistics.median(r["abused_p99"] / r["quiet_p99"] for r in rounds)
    floor = statistics.median(r["healthz_flood_p99"] / r["quiet_p99"] for r in rounds)
    print(f"   {label}: median p99 ratio under abuse {ratio:.2f}x (target: at most 2x); "
          f"under a /healthz flood {floor:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fairness", "throughput"], help="run only this round")
    parser.add_argument("--fairness-rounds", type=int, default=ROUNDS)
    parser.add_argument("--tiny-jobs", type=int, default=1000)
    arguments = parser.parse_args()
    if arguments.only is None:
        service_rounds()
    if arguments.only in (None, "fairness"):
        print(f"5. fairness: one worker process, a big job then a tiny one from another client "
              f"({arguments.fairness_rounds} rounds)")  # fmt: skip
        position_cost()
        report_fairness(fairness_round(arguments.fairness_rounds), arguments.fairness_rounds)
    if arguments.only in (None, "throughput"):
        tiny_jobs_round(arguments.tiny_jobs)


def tiny_jobs_round(count: int) -> None:
    """Round 6: `count` one-step jobs at once on one worker, submitted by 16 clients, polled calmly."""
    engine = statistics.median(engine_seconds(TINY_JOB))
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(),
                           extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS, "FILTERVIZ_MAX_ACTIVE_JOBS": str(count + 10),
                                      **OPEN_ADMISSION})  # fmt: skip
        try:
            stack.start_service(["w1"])
            run_job(stack.api_url, TINY_JOB, requests.Session())  # warm the worker's compiled step
            session = requests.Session()
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                ids = list(pool.map(lambda seed: submit_only(stack.api_url, {**TINY_JOB, "seed": seed}), range(count)))
            submitted = time.perf_counter() - started
            for job_id in ids:
                while (status := session.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).json()["status"]) in (
                    "queued",
                    "running",
                ):
                    time.sleep(0.2)
                assert status == "succeeded", job_id
            wall = time.perf_counter() - started
        finally:
            stack.stop_all(at_once=True)
    print(
        f"6. {count} one-step jobs (1 filter, 32 px, uncached) on one worker: all submitted in {submitted:.1f} s, "
        f"all succeeded in {wall:.1f} s; {wall / count * 1000:.0f} ms a job, of which {engine * 1000:.0f} ms compute"
    )


def submit_only(api: str, job: dict) -> str:
    response = requests.post(f"{api}/v1/jobs", json=job, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def service_rounds() -> None:
    """Rounds 1-4, on one stack."""
    engine = statistics.median(engine_seconds(OVERHEAD_JOB))
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(
            Path(workdir), api_port=free_port(), extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS, **OPEN_ADMISSION}
        )
        try:
            stack.start_service(["w1"])
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

            stack.stop("single")
            stack.stop("second")
            poll_url = f"{stack.api_url}/v1/jobs/{finished['id']}"
            print(f"4. abuse: one client polls while {ABUSERS} connections (wrk) send invalid submissions "
                  f"({ROUNDS} x {ABUSE_SECONDS} s each)")  # fmt: skip
            for label, env in [("default admission", {}), ("rate limit off", {"FILTERVIZ_SUBMIT_RATE_LIMIT": "off"})]:
                for name in OPEN_ADMISSION:
                    stack.extra_env.pop(name, None)
                stack.extra_env.update(env)
                stack.stop("api")
                stack.start_api()
                report_abuse(label, [abuse_round(stack, poll_url, Path(workdir)) for _ in range(ROUNDS)])
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
