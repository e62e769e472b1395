"""Faults at any moment, on a local stack started here (Valkey, SeaweedFS, two Celery workers,
gunicorn) with the production lease and redelivery settings.

For each fault and each moment, N trials: a job is submitted, the fault is caused at that moment,
capacity comes back (the worker started again, Redis or S3 back), and the job is followed to its end.

Moments:
    random     a time drawn uniformly within an undisturbed job's duration: start, delivery,
               chunks and finish all get hit
    startup    the worker is started again just before the submission, so the fault falls while
               it loads its weights (an OOM kill while loading, a crash loop)
    delivered  a unit was delivered to a worker that has not begun it (the pool processes are
               held with SIGSTOP until the fault)
    running    the job's first chunk runs (its worker is hit)
    finish     the finish step runs
Faults:
    worker-killed        the whole worker (Celery parent and pool) SIGKILLed, started again 2 s later
    worker-stopped       the worker sent SIGTERM (a rollout, `docker compose stop`), started again 2 s
                         after it exits
    pool-process-killed  the pool process SIGKILLed (Celery starts another)
    redis-killed         Redis SIGKILLed, started again from its append-only file
    s3-down              the S3 server SIGKILLed, started again after --outage seconds

Columns: trials; how many succeeded; recovery, the seconds from capacity back until the job ended
(median and worst: the target is 60 s); lost and duplicated filters over all trials (missing from,
or listed twice in, the manifest and the stored pictures).

    python -m bench.chaos --trials 20
    python -m bench.chaos --faults worker-killed,redis-killed --moments delivered --trials 3
"""

import argparse
import collections
import json
import os
import random
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil
import redis
import requests

from devstack.local import LocalStack, free_port, wait_until
from shared.jobs import job_keys
from shared.keys import RECEIVED, lease_key
from shared.storage import Storage, job_key

WORKERS = ("alpha", "beta")
FILTERS = 8
JOB = {"layer": "block3_conv1", "filters": {"start": 0, "stop": FILTERS}, "image_size": 32, "steps": 20,
       "grid": {"n": 3, "margin": 2}, "cache": False}  # fmt: skip
ENDED = {"succeeded", "failed", "canceled"}
TARGET_SECONDS = 60
RESTART_DELAY = 2.0
MOMENTS = ("random", "startup", "delivered", "running", "finish")


@dataclass
class Trial:
    fault: str
    moment: str
    status: str
    recovery: float
    lost: int
    duplicated: int
    note: str


def start_stack(workdir: Path) -> LocalStack:
    s3_port = free_port()
    stack = LocalStack(
        workdir,
        api_port=free_port(),
        s3_port=s3_port,
        extra_env={"FILTERVIZ_WEIGHTS": "random:0", "FILTERVIZ_CHUNK_SIZE": "4", "FILTERVIZ_TF_THREADS": "1"},
    )
    stack.start_service(WORKERS)
    return stack


def redis_client(stack: LocalStack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=5)


def job_state(stack: LocalStack, job_id: str) -> dict | None:
    """The job's resource, or None while the API can't answer (Redis down)."""
    try:
        response = requests.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def count_filters(stack: LocalStack, job_id: str) -> tuple[int, int]:
    """Lost and duplicated filters: in the manifest, and among the stored pictures. The API answers 503
    for a few seconds after S3 comes back (its storage probe): those answers are waited out."""
    deadline = time.monotonic() + 60
    while True:
        manifest = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/manifest.json", timeout=10)
        if manifest.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    listed = [entry["index"] for entry in manifest.json()["filters"]] if manifest.status_code == 200 else []
    stored = {int(Path(k).stem) for k in Storage(stack.settings).list_keys(job_key(job_id, "filters/"))}
    lost = len(set(range(FILTERS)) - (set(listed) & stored))
    duplicated = sum(n - 1 for n in collections.Counter(listed).values() if n > 1)
    return lost, duplicated


# --- who to hit --------------------------------------------------------------------------------


def pool_processes(stack: LocalStack, worker: str) -> list[psutil.Process]:
    return psutil.Process(stack.processes[worker].pid).children(recursive=True)


def receiver_of(stack: LocalStack, job_id: str) -> str | None:
    """The worker (its stack name) that received a unit of the job and has not begun it."""
    for member, value in redis_client(stack).hgetall(RECEIVED).items():
        if member.decode().startswith(f"{job_id}:"):
            return json.loads(value)["receiver"].rsplit(":", 1)[0]  # '<worker>:<pid>'
    return None


def holder_of(stack: LocalStack, job_id: str, unit: str = "*") -> str | None:
    """The worker holding a lease of the job (of `unit`), from the lease token '<worker>:<pid>|<nonce>'."""
    client = redis_client(stack)
    for key in client.keys(lease_key(job_id, unit)):
        token = client.get(key)
        if token:
            return token.decode().split("|")[0].rsplit(":", 1)[0]
    return None


@contextmanager
def pools_held(stack: LocalStack) -> Iterator[None]:
    """Every pool process stopped (SIGSTOP): messages are received, none begins; resumed on exit."""
    held = [process for worker in WORKERS if worker in stack.processes for process in pool_processes(stack, worker)]
    for process in held:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in held:
            if process.is_running():
                process.send_signal(signal.SIGCONT)


# --- faults: each causes its fault on `target` and returns when capacity is back ---------------


def restart_worker(stack: LocalStack, name: str) -> None:
    """Start the worker again, keeping the stopped one's log beside the new one."""
    log = stack.workdir / f"{name}.log"
    if log.exists():
        log.rename(log.with_suffix(f".{time.strftime('%H%M%S')}.{random.randrange(1000)}.log"))
    stack.start_worker(name)


def resume_pool(stack: LocalStack, target: str) -> list[psutil.Process]:
    """The target's pool processes, resumed if held: they go on as running ones would."""
    pool = pool_processes(stack, target)
    for process in pool:
        process.send_signal(signal.SIGCONT)
    return pool


def signal_and_restart(stack: LocalStack, target: str, sig: signal.Signals) -> str:
    stack.stop(target, sig)
    time.sleep(RESTART_DELAY)
    restart_worker(stack, target)
    return f"{target} {sig.name}, restarted"


def kill_worker(stack: LocalStack, target: str) -> str:
    return signal_and_restart(stack, target, signal.SIGKILL)


def stop_worker(stack: LocalStack, target: str) -> str:
    resume_pool(stack, target)
    return signal_and_restart(stack, target, signal.SIGTERM)


def kill_pool_process(stack: LocalStack, target: str) -> str:
    for process in resume_pool(stack, target):
        process.kill()
    return f"{target}'s pool process SIGKILL"


def kill_redis(stack: LocalStack, target: str) -> str:
    stack.stop("redis", signal.SIGKILL)
    stack.start_redis()
    return "Redis SIGKILL, restarted from its append-only file"


def s3_down(stack: LocalStack, target: str, outage: float = 30.0) -> str:
    stack.stop("s3", signal.SIGKILL)
    time.sleep(outage)
    stack.start_s3()
    return f"S3 SIGKILL, back after {outage:.0f} s"


FAULTS: dict[str, Callable[[LocalStack, str], str]] = {
    "worker-killed": kill_worker,
    "worker-stopped": stop_worker,
    "pool-process-killed": kill_pool_process,
    "redis-killed": kill_redis,
    "s3-down": s3_down,
}


# --- one trial ---------------------------------------------------------------------------------


def submit(stack: LocalStack, seed: int) -> str:
    response = requests.post(f"{stack.api_url}/v1/jobs", json={**JOB, "seed": seed}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def caught_holding(stack: LocalStack, seed: int, unit: str, tries: int = 5) -> str:
    """A job whose `unit` (a chunk, or "finish") holds its lease now. A unit takes a fraction of a
    second: its lease is watched from the submission on; a job that ended unseen (this process was
    not scheduled in time) is submitted again with the next seed."""
    client = redis_client(stack)
    for attempt in range(tries):
        job_id = submit(stack, seed + attempt * 1000)
        lease, deadline = lease_key(job_id, unit), time.monotonic() + 120
        while not client.exists(lease):
            if (client.hget(job_keys(job_id).record, "status") or b"").decode() in ENDED:
                break
            assert time.monotonic() < deadline, f"job {job_id}: {unit} not begun within 120 s"
            time.sleep(0.001)
        else:
            return job_id
    raise AssertionError(f"{tries} jobs ended before their {unit} could be caught")


def arrange(stack: LocalStack, moment: str, seed: int, job_seconds: float, exits: ExitStack) -> tuple[str, str]:
    """Submit the trial's job and wait for its moment; returns the job and the worker to hit.
    What must be undone right after the fault (held pools) goes on `exits`."""
    rng = random.Random(seed)
    if moment == "startup":
        target = rng.choice(WORKERS)
        stack.stop(target, signal.SIGKILL)
        stack.spawn_worker(target)  # not waiting for its weights
        job_id = submit(stack, seed)
        time.sleep(rng.uniform(0.0, 8.0))
        return job_id, target
    if moment == "delivered":
        exits.enter_context(pools_held(stack))
        job_id = submit(stack, seed)
        wait_until(lambda: receiver_of(stack, job_id), "a unit delivered and not begun", 60)
        return job_id, receiver_of(stack, job_id) or WORKERS[0]
    if moment in ("running", "finish"):
        unit = "0" if moment == "running" else "finish"
        job_id = caught_holding(stack, seed, unit)
        exits.enter_context(pools_held(stack))
        return job_id, holder_of(stack, job_id, unit) or WORKERS[0]
    job_id = submit(stack, seed)
    time.sleep(rng.uniform(0.0, job_seconds))
    return job_id, holder_of(stack, job_id) or rng.choice(WORKERS)


def trial(stack: LocalStack, fault: str, moment: str, seed: int, job_seconds: float) -> Trial:
    with ExitStack() as exits:
        job_id, target = arrange(stack, moment, seed, job_seconds, exits)
        note = FAULTS[fault](stack, target)
    back = time.monotonic()
    state = None
    while time.monotonic() - back < 600:
        state = job_state(stack, job_id)
        if state and state["status"] in ENDED:
            break
        time.sleep(0.25)
    recovery = time.monotonic() - back
    lost, duplicated = count_filters(stack, job_id)
    status = state["status"] if state else "unknown"
    error = f" {state['error']['code']}" if state and state.get("error") else ""
    return Trial(fault, moment, status, recovery, lost, duplicated, f"{note}{error}")


def ensure_workers(stack: LocalStack) -> None:
    """Both workers up and loaded (a fault may have left one stopped or starting)."""
    for name in WORKERS:
        process = stack.processes.get(name)
        if process is None or process.poll() is not None:
            restart_worker(stack, name)
    wait_until(lambda: (requests.get(f"{stack.api_url}/readyz", timeout=10).json()["workers"] or 0) >= len(WORKERS),
               "workers live", 120)  # fmt: skip


def undisturbed_seconds(stack: LocalStack) -> float:
    started = time.monotonic()
    job_id = submit(stack, 0)
    wait_until(lambda: (job_state(stack, job_id) or {}).get("status") in ENDED, "the undisturbed job", 300)
    return time.monotonic() - started


def summary(fault: str, moment: str, trials: list[Trial]) -> str:
    recoveries = [t.recovery for t in trials]
    ok = sum(t.status == "succeeded" for t in trials)
    lost, duplicated = sum(t.lost for t in trials), sum(t.duplicated for t in trials)
    return (f"{fault:<21}{moment:<11}{len(trials):>7}{ok:>10}{statistics.median(recoveries):>9.1f}"
            f"{max(recoveries):>8.1f}{lost:>6}{duplicated:>5}")  # fmt: skip


HEADER = f"{'fault':<21}{'moment':<11}{'trials':>7}{'succeeded':>10}{'median s':>9}{'worst s':>8}{'lost':>6}{'dup':>5}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, from: " + ", ".join(FAULTS))
    parser.add_argument("--moments", default=",".join(MOMENTS), help="comma-separated, from: " + ", ".join(MOMENTS))
    parser.add_argument("--trials", type=int, default=3, help="trials per fault and moment (the target: 20)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds S3 stays down")
    parser.add_argument("--logs", type=Path, help="keep the stack's logs in this folder (default: a temporary one)")
    args = parser.parse_args()
    FAULTS["s3-down"] = lambda stack, target: s3_down(stack, target, args.outage)
    with tempfile.TemporaryDirectory(prefix="filterviz-chaos-") as temporary:
        workdir = args.logs or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = start_stack(workdir)
        results: dict[tuple[str, str], list[Trial]] = {}
        try:
            job_seconds = undisturbed_seconds(stack)
            print(f"undisturbed job: {job_seconds:.1f} s\n{'fault':<21}{'moment':<11}{'status':<11}recovery s  note")
            for fault in args.faults.split(","):
                for moment in args.moments.split(","):
                    for number in range(args.trials):
                        ensure_workers(stack)
                        done = trial(stack, fault, moment, seed=1000 + number, job_seconds=job_seconds)
                        results.setdefault((fault, moment), []).append(done)
                        print(f"{fault:<21}{moment:<11}{done.status:<11}{done.recovery:>10.1f}  {done.note}",
                              flush=True)  # fmt: skip
        finally:
            stack.stop_all(at_once=True)
    print(f"\n{HEADER}")
    for (fault, moment), trials in results.items():
        print(summary(fault, moment, trials))
    worst = max((t.recovery for trials in results.values() for t in trials), default=0.0)
    print(f"\nworst recovery {worst:.1f} s (target {TARGET_SECONDS} s)")


if __name__ == "__main__":
    main()
