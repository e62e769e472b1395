"""Fault matrix on a local stack started here (Redis, SeaweedFS, two Celery workers, gunicorn),
with the production lease and redelivery settings. For each fault, a 4-chunk job is submitted,
the fault is caused while a chunk runs, and the job is followed to its end:

    recovery   seconds from the fault until every chunk that was running at that moment is done
    job        seconds from submission to the end state (the undisturbed job's time for comparison)
    lost, dup  filters missing from, or listed twice in, the manifest and the stored pictures

    python bench/chaos.py                      # every fault
    python bench/chaos.py --faults s3-down,redis-restart
"""

import argparse
import collections
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import redis
import requests

from devstack.local import LocalStack, free_port, wait_until
from shared.storage import Storage, job_key

WORKERS = ("alpha", "beta")
OUTAGE_SECONDS = 30
FILTERS = 16
JOB = {"layer": "block4_conv1", "filters": {"start": 0, "stop": FILTERS}, "image_size": 64, "steps": 80,
       "grid": {"n": 4, "margin": 2}}  # fmt: skip
ENDED = {"succeeded", "failed", "canceled"}


@dataclass
class Outcome:
    fault: str
    status: str
    recovery: float | None
    job_seconds: float
    lost: int
    duplicated: int
    note: str = ""


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


def leases(stack: LocalStack, job_id: str) -> dict[str, str]:
    """Running units of the job: unit -> lease token ('<worker>:<pid>|<nonce>')."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    keys = client.keys(f"filterviz:lease:{job_id}:*")
    return {k.decode().rsplit(":", 1)[1]: v.decode() for k, v in zip(keys, client.mget(keys), strict=True) if v}


def chunk_done(stack: LocalStack, job_id: str, unit: str) -> bool:
    if unit == "finish":
        return requests.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).json()["status"] in ENDED
    return Storage(stack.settings).get(job_key(job_id, f"chunks/{unit}.json")) is not None


def count_filters(stack: LocalStack, job_id: str, expected: list[int]) -> tuple[int, int]:
    """Lost and duplicated filters: in the manifest, and among the stored pictures."""
    manifest = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/manifest.json", timeout=10)
    listed = [entry["index"] for entry in manifest.json()["filters"]] if manifest.status_code == 200 else []
    stored = {int(Path(k).stem) for k in Storage(stack.settings).list_keys(job_key(job_id, "filters/"))}
    lost = len(set(expected) - (set(listed) & stored))
    duplicated = sum(n - 1 for n in collections.Counter(listed).values() if n > 1)
    return lost, duplicated


def worker_pid(token: str) -> tuple[str, int]:
    name, pid = token.split("|")[0].rsplit(":", 1)
    return name, int(pid)


def run(stack: LocalStack, fault: str, cause: Callable[[LocalStack, dict[str, str]], str], seed: int) -> Outcome:
    api = stack.api_url
    expected = list(range(FILTERS))
    submitted = time.monotonic()
    job = requests.post(f"{api}/v1/jobs", json={**JOB, "seed": seed}, timeout=10).json()
    wait_until(lambda: leases(stack, job["id"]), "a chunk running", 120)
    time.sleep(1.0)  # inside the chunk
    running = leases(stack, job["id"])
    caused = time.monotonic()
    note = cause(stack, running)
    recovered = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if recovered is None and all(chunk_done(stack, job["id"], unit) for unit in running):
            recovered = time.monotonic() - caused
        state = requests.get(f"{api}/v1/jobs/{job['id']}", timeout=10).json()
        if state["status"] in ENDED:
            break
        time.sleep(0.5)
    job_seconds = time.monotonic() - submitted
    lost, duplicated = count_filters(stack, job["id"], expected)
    error = state["error"]["code"] if state.get("error") else ""
    return Outcome(fault, state["status"], recovered, job_seconds, lost, duplicated, f"{note} {error}".strip())


def nothing(stack: LocalStack, running: dict[str, str]) -> str:
    return ""


def restart_worker(stack: LocalStack, name: str) -> None:
    """Start the worker again, keeping the stopped one's log beside the new one."""
    log = stack.workdir / f"{name}.log"
    log.rename(log.with_suffix(f".{time.strftime('%H%M%S')}.log"))
    stack.start_worker(name)


def kill_pool_process(stack: LocalStack, running: dict[str, str]) -> str:
    _, pid = worker_pid(next(iter(running.values())))
    os.kill(pid, signal.SIGKILL)
    return f"pool process {pid} SIGKILL"


def kill_whole_worker(stack: LocalStack, running: dict[str, str]) -> str:
    name, _ = worker_pid(next(iter(running.values())))
    stack.stop(name, signal.SIGKILL)
    restart_worker(stack, name)
    return f"{name} SIGKILL, restarted"


def s3_down(stack: LocalStack, running: dict[str, str]) -> str:
    stack.stop("s3", signal.SIGKILL)
    time.sleep(OUTAGE_SECONDS)
    stack.start_s3()
    return f"S3 killed, back after {OUTAGE_SECONDS} s"


def s3_hung(stack: LocalStack, running: dict[str, str]) -> str:
    stack.signal("s3", signal.SIGSTOP)
    time.sleep(OUTAGE_SECONDS)
    stack.signal("s3", signal.SIGCONT)
    return f"S3 SIGSTOP for {OUTAGE_SECONDS} s"


def redis_restart(stack: LocalStack, running: dict[str, str]) -> str:
    started = time.monotonic()
    stack.restart_redis()
    return f"Redis down {time.monotonic() - started:.1f} s"


def worker_sigterm(stack: LocalStack, running: dict[str, str]) -> str:
    name, _ = worker_pid(next(iter(running.values())))
    process = stack.processes[name]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)  # to the Celery parent only, as `docker stop` does to PID 1
    code = process.wait(timeout=120)
    stopped = time.monotonic() - started
    stack.processes.pop(name)
    restart_worker(stack, name)
    return f"{name} exited {code} after {stopped:.1f} s, restarted"


FAULTS: dict[str, Callable[[LocalStack, dict[str, str]], str]] = {
    "none": nothing,
    "pool-process-killed": kill_pool_process,
    "whole-worker-killed": kill_whole_worker,
    "s3-down-30s": s3_down,
    "s3-hung-30s": s3_hung,
    "redis-restart": redis_restart,
    "worker-sigterm": worker_sigterm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, from: " + ", ".join(FAULTS))
    parser.add_argument("--logs", type=Path, help="keep the stack's logs in this folder (default: a temporary one)")
    args = parser.parse_args()
    chosen = ["none", *(f for f in args.faults.split(",") if f != "none")]
    with tempfile.TemporaryDirectory(prefix="filterviz-chaos-") as temporary:
        workdir = args.logs or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = start_stack(workdir)
        try:
            outcomes = []
            for seed, fault in enumerate(chosen, start=1):
                outcome = run(stack, fault, FAULTS[fault], seed)
                outcomes.append(outcome)
                print(_row(outcome), flush=True)
        finally:
            stack.stop_all()
    print("\n" + _header())
    for outcome in outcomes:
        print(_row(outcome))


def _header() -> str:
    return f"{'fault':<22}{'end state':<11}{'recovery s':>11}{'job s':>8}{'lost':>6}{'dup':>5}  note"


def _row(o: Outcome) -> str:
    recovery = f"{o.recovery:.1f}" if o.recovery is not None else "-"
    return f"{o.fault:<22}{o.status:<11}{recovery:>11}{o.job_seconds:>8.1f}{o.lost:>6}{o.duplicated:>5}  {o.note}"


if __name__ == "__main__":
    main()
