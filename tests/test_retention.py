"""Retention and DELETE on the real stack (Redis, SeaweedFS, a worker, gunicorn): an expired job's
objects and records are deleted by the sweep, a recent or unfinished one is kept, and DELETE on a
finished job deletes it."""

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis
import requests

from devstack.local import wait_until
from shared.jobs import JOB_LIST, job_keys, job_store
from shared.retention import expire_results, newest_writes
from shared.storage import Storage, job_key
from tests.service_helpers import SMALL_JOB, get_job, running_stack, submit, wait_for

DAY = 86400
RETENTION = 7 * DAY
# Deep enough to still be running (or queued) while the test looks at it.
SLOW_JOB = {"layer": "block4_conv1", "filters": {"start": 0, "stop": 32}, "image_size": 64, "steps": 50, "seed": 4}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("retention"), ["keeper"], chunk_size=8) as stack:
        yield stack


def finished_job(api: str, seed: int) -> str:
    job = wait_for(api, submit(api, {**SMALL_JOB, "seed": seed})["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    return job["id"]


def assert_gone(stack, job_id: str) -> None:
    """No object, no record, on no list, and a 404."""
    assert Storage(stack.settings).list_keys(job_key(job_id, "")) == []
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert client.exists(*job_keys(job_id)) == 0
    assert client.zscore(JOB_LIST, job_id) is None
    assert requests.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).status_code == 404
    assert job_id not in [job["id"] for job in requests.get(f"{stack.api_url}/v1/jobs", timeout=10).json()["jobs"]]


def test_newest_writes_are_per_job_and_ignore_other_prefixes():
    at = [datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 3)]
    listing = [("jobs/a/grid.png", at[0]), ("jobs/a/filters/1.png", at[2]), ("jobs/b/manifest.json", at[1]),
               ("probes/x", at[2]), ("jobs/stray", at[2])]  # fmt: skip
    assert newest_writes(listing) == {"a": at[2].timestamp(), "b": at[1].timestamp()}


def test_an_expired_jobs_objects_and_records_are_deleted_and_others_kept(stack):
    old = finished_job(stack.api_url, 31)
    store, storage = job_store(stack.settings), Storage(stack.settings)
    assert storage.list_keys(job_key(old, "filters/"))
    # Nothing is older than the retention yet: nothing goes.
    assert expire_results(store, storage, RETENTION).jobs == []
    unfinished = submit(stack.api_url, SLOW_JOB)["id"]
    wait_for(stack.api_url, unfinished, {"running"})
    # Eight days on, the finished job is past the retention; the running one is kept whatever its age.
    swept = expire_results(store, storage, RETENTION, now=time.time() + 8 * DAY)
    assert old in swept.jobs and unfinished not in swept.jobs and swept.objects >= 16 + 3
    assert_gone(stack, old)
    assert get_job(stack.api_url, unfinished)["status"] == "running"
    assert requests.delete(f"{stack.api_url}/v1/jobs/{unfinished}", timeout=10).status_code == 200


def test_job_records_live_no_longer_than_the_retention(stack):
    job_id = finished_job(stack.api_url, 32)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    ttls = [client.ttl(key) for key in job_keys(job_id) if client.exists(key)]
    assert ttls and all(0 < ttl <= RETENTION for ttl in ttls)


def test_the_sweep_runs_as_a_command(stack):
    command = [sys.executable, "-m", "shared.retention", "--once"]
    run = subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "older than 7 days" in run.stderr


def test_delete_of_a_finished_job_deletes_its_results_and_record(stack):
    job_id = finished_job(stack.api_url, 33)
    deleted = requests.delete(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_gone(stack, job_id)
    assert requests.delete(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).status_code == 404


def test_delete_cancels_an_unfinished_job_and_a_second_delete_deletes_it(stack):
    job_id = submit(stack.api_url, {**SLOW_JOB, "seed": 5})["id"]
    canceled = requests.delete(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    # POST .../cancel only ever cancels: on a finished job it is a 409, and the job stays.
    again = requests.post(f"{stack.api_url}/v1/jobs/{job_id}/cancel", json={}, timeout=10)
    assert again.status_code == 409 and get_job(stack.api_url, job_id)["status"] == "canceled"
    assert requests.delete(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).status_code == 204
    # A chunk that was running may write its last pictures while it stops: the sweep takes them.
    wait_until(lambda: not any(job_id in str(w.get("unit")) for w in workers(stack)), "the chunk to stop", 60)
    expire_results(job_store(stack.settings), Storage(stack.settings), RETENTION, now=time.time() + 8 * DAY)
    assert_gone(stack, job_id)


def workers(stack) -> list[dict]:
    return requests.get(f"{stack.api_url}/v1/workers", timeout=10).json()["workers"]


def test_a_canceled_jobs_leftover_grid_and_manifest_are_not_served(stack):
    job_id = submit(stack.api_url, {**SLOW_JOB, "seed": 6})["id"]
    assert requests.post(f"{stack.api_url}/v1/jobs/{job_id}/cancel", json={}, timeout=10).status_code == 200
    # As a finish that lost the race to the cancel would leave them.
    storage = Storage(stack.settings)
    storage.put(job_key(job_id, "grid.png"), b"\x89PNG leftover", "image/png")
    storage.put_json(job_key(job_id, "manifest.json"), {"id": job_id})
    for name in ("grid.png", "manifest.json", "thumbnail.png"):
        answer = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/{name}", timeout=10)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_ready", name
    assert get_job(stack.api_url, job_id)["status"] == "canceled"
