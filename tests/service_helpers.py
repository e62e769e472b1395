"""Talking to a running stack the way a client would: submit, poll, fetch."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from devstack.local import LocalStack, free_port
from shared.pictures import decode_png
from tests.conftest import TEST_WEIGHTS

SMALL_JOB = {"layer": "block3_conv1", "filters": {"start": 0, "stop": 16}, "image_size": 32, "steps": 4,
             "grid": {"n": 3, "margin": 2}, "seed": 21}  # fmt: skip


@contextmanager
def running_stack(
    workdir: Path, workers: list[str], chunk_size: int, worker_app: str = "worker.tasks", env: dict | None = None
) -> Iterator[LocalStack]:
    """Redis, SeaweedFS, the API and the named workers (of Celery app `worker_app`) on free ports,
    with the production lease and redelivery settings; stopped on exit."""
    s3_port = free_port()
    stack = LocalStack(
        workdir,
        api_port=free_port(),
        s3_port=s3_port,
        extra_env={
            "FILTERVIZ_WEIGHTS": TEST_WEIGHTS,
            "FILTERVIZ_CHUNK_SIZE": str(chunk_size),
            "FILTERVIZ_CHUNK_TIME_LIMIT": "60",
            # The short chunk limit would set the default job budget to a few seconds of work; the
            # test jobs are small, and chunks are still capped to fit the limit (shared/cost.py).
            "FILTERVIZ_JOB_BUDGET_TFLOP": "100",
            # The upload tests refuse dozens of files; test_api_admission checks the limit itself.
            "FILTERVIZ_UPLOAD_RATE_LIMIT": "500 per hour",
            # Another host name for the same server: presigned URLs must be signed for this one.
            "S3_PUBLIC_ENDPOINT_URL": f"http://localhost:{s3_port}",
            **(env or {}),
        },
    )
    try:
        stack.start_service(workers, worker_app)
        yield stack
    finally:
        stack.stop_all(at_once=True)


def submit(api: str, job: dict) -> dict:
    response = requests.post(f"{api}/v1/jobs", json=job, timeout=10)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    return response.json()


def get_job(api: str, job_id: str) -> dict:
    response = requests.get(f"{api}/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(api: str, job_id: str, statuses: set[str], timeout: float = 120, seen: list | None = None) -> dict:
    """Poll the job until its status is in `statuses`; every resource seen goes into `seen`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job(api, job_id)
        if seen is not None:
            seen.append(job)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def fetch_png(url: str) -> np.ndarray:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    return decode_png(response.content)
