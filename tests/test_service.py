"""The service end to end: real Redis, real S3 (SeaweedFS), real Celery workers and gunicorn,
all started by the tests on free ports."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import redis
import requests

from devstack.local import LocalStack, wait_until
from shared.models import ARCHITECTURES
from shared.storage import Storage
from tests.conftest import SERVICE_CHUNK_SIZE, TEST_WEIGHTS
from tests.service_helpers import SMALL_JOB, fetch_png, get_job, submit, wait_for

CHUNK_SIZE = SERVICE_CHUNK_SIZE


@pytest.fixture(scope="module")
def stack(service_stack):
    return service_stack


@pytest.fixture(scope="module")
def api(stack):
    return stack.api_url


@pytest.fixture(scope="module")
def finished_small_job(api):
    """The small job run once, undisturbed, with every resource seen while polling (rendered, not
    taken from the cache that the session's other modules fill)."""
    seen: list[dict] = []
    job = submit(api, {**SMALL_JOB, "cache": False})
    seen.append(job)
    wait_for(api, job["id"], {"succeeded", "failed"}, seen=seen)
    return job["id"], seen


def cli_grid(tmp_path, job: dict) -> np.ndarray:
    stop = job["filters"]["stop"]
    command = [sys.executable, "-m", "cli", "render", "--layer", job["layer"], "--filters", f"0-{stop - 1}",
               "--size", str(job["image_size"]), "--steps", str(job["steps"]), "--grid", str(job["grid"]["n"]),
               "--margin", str(job["grid"]["margin"]), "--seed", str(job["seed"]), "--weights", TEST_WEIGHTS,
               "--out", str(tmp_path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    from shared.pictures import decode_png

    return decode_png((tmp_path / "grid.png").read_bytes()), json.loads((tmp_path / "manifest.json").read_text())


def test_job_runs_end_to_end_and_matches_a_cli_render(stack, api, finished_small_job, tmp_path):
    job_id, seen = finished_small_job
    job = seen[-1]
    assert job["status"] == "succeeded", job["error"]
    assert job["weights"] == TEST_WEIGHTS
    assert job["params"]["filters"] == list(range(16))

    through_api = fetch_png(f"{api}{job['links']['grid']}")
    presigned = job["links"]["grid_presigned"]
    assert presigned.startswith(f"http://localhost:{stack.s3_port}/")  # signed for the public endpoint
    through_s3 = fetch_png(presigned)
    assert (through_api == through_s3).all()
    side = 3 * 32 + 2 * 2
    assert through_api.shape == (side, side, 3)

    reference, cli_manifest = cli_grid(tmp_path, SMALL_JOB)
    manifest = requests.get(f"{api}{job['links']['manifest']}", timeout=10).json()
    assert manifest["grid"]["order"] == cli_manifest["grid"]["order"]
    assert np.abs(through_api.astype(int) - reference.astype(int)).max() <= 2

    picture = fetch_png(f"{api}/v1/jobs/{job_id}/filters/{manifest['grid']['order'][0]}.png")
    assert (picture == through_api[:32, :32]).all()
    # A grid smaller than a thumbnail is its own thumbnail: never enlarged.
    assert (fetch_png(f"{api}{job['links']['thumbnail']}") == through_api).all()


def test_filters_are_listed_as_their_chunks_finish(api):
    job = submit(api, {**SMALL_JOB, "filters": {"start": 0, "stop": 24}, "steps": 30, "seed": 4})
    counts = []
    while True:
        listing = requests.get(f"{api}{job['links']['filters']}", timeout=10).json()
        counts.append(len(listing["filters"]))
        if listing["status"] in {"succeeded", "failed"}:
            break
        time.sleep(0.05)
    assert listing["status"] == "succeeded"
    assert all(count % CHUNK_SIZE == 0 for count in counts)  # a chunk's pictures appear together
    assert counts == sorted(counts) and counts[-1] == 24 and any(0 < count < 24 for count in counts)
    manifest = requests.get(f"{api}{job['links']['manifest']}", timeout=10).json()
    expected = sorted((f["index"], f["loss"], f["dead"]) for f in manifest["filters"])
    assert [(f["index"], f["loss"], f["dead"]) for f in listing["filters"]] == expected
    assert fetch_png(f"{api}{listing['filters'][7]['url']}").shape == (32, 32, 3)
    assert fetch_png(f"{api}{listing['filters'][7]['url']}?size=16").shape == (16, 16, 3)


@pytest.mark.parametrize("size", ["0", "2000", "big", ""])
def test_a_bad_picture_size_is_422_naming_it(api, finished_small_job, size):
    job_id, _ = finished_small_job
    response = requests.get(f"{api}/v1/jobs/{job_id}/filters/3.png", params={"size": size}, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["problems"][0]["field"] == "size"


@pytest.mark.parametrize("limit", ["0", "-5", "101", "many"])
def test_a_bad_list_limit_is_422_naming_it(api, limit):
    response = requests.get(f"{api}/v1/jobs", params={"limit": limit}, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["problems"][0]["field"] == "limit"
    listed = requests.get(f"{api}/v1/jobs", params={"limit": 2}, timeout=10).json()["jobs"]
    assert len(listed) <= 2


def test_statuses_and_progress_move_forward_only(finished_small_job):
    _, seen = finished_small_job
    order = {"queued": 0, "running": 1, "succeeded": 2}
    statuses = [order[job["status"]] for job in seen]
    assert statuses == sorted(statuses)
    # The submit reply says what the job is by then: an idle worker may already have taken a chunk.
    assert seen[0]["status"] in {"queued", "running"} and seen[-1]["status"] == "succeeded"
    done = [job["progress"]["done"] for job in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 16
    assert all(job["progress"]["total"] == 16 for job in seen)
    assert seen[-1]["started_at"] and seen[-1]["finished_at"] >= seen[-1]["started_at"] >= seen[-1]["created_at"]


def test_two_workers_share_one_job(api):
    job = submit(api, {**SMALL_JOB, "filters": {"start": 0, "stop": 40}, "steps": 10, "seed": 3})
    assert wait_for(api, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    manifest = requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
    workers = {chunk["worker"].split(":")[0] for chunk in manifest["timings"]["chunks"]}
    assert workers == {"alpha", "beta"}
    assert len(manifest["timings"]["chunks"]) == 40 // CHUNK_SIZE
    assert {entry["worker"].split(":")[0] for entry in manifest["filters"]} == {"alpha", "beta"}


def chunk_records(stack: LocalStack, job_id: str) -> int:
    storage = Storage(stack.settings)
    return sum(storage.get(f"jobs/{job_id}/chunks/{i}.json") is not None for i in range(100))


SLOW_JOB = {"layer": "block5_conv1", "filters": {"start": 0, "stop": 40}, "image_size": 64, "steps": 60, "seed": 8}


def test_cancel_a_queued_job_and_a_running_job(stack, api):
    running = submit(api, SLOW_JOB)
    queued = submit(api, {**SLOW_JOB, "seed": 9})
    wait_until(lambda: get_job(api, running["id"])["progress"]["done"] > 0, "first chunk", 60)

    canceled = requests.delete(f"{api}/v1/jobs/{queued['id']}", timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    canceled = requests.post(f"{api}/v1/jobs/{running['id']}/cancel", json={}, timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    records_at_cancel = chunk_records(stack, running["id"])

    time.sleep(8)  # long enough for every chunk left in the queue to be taken and skipped
    assert chunk_records(stack, queued["id"]) == 0
    assert get_job(api, queued["id"])["progress"]["done"] == 0
    # At most the chunks already running when it was canceled (one per worker) finish.
    assert chunk_records(stack, running["id"]) <= records_at_cancel + 2 < 10
    final = get_job(api, running["id"])
    assert final["status"] == "canceled" and final["finished_at"]
    assert requests.get(f"{api}/v1/jobs/{running['id']}/grid.png", timeout=10).status_code == 404
    again = requests.post(f"{api}/v1/jobs/{running['id']}/cancel", json={}, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


UNKNOWN_ID = "0b5bcf36-3a43-4f8e-9d0b-3f3c1b0a1e2d"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"layer": "block6_conv1"}, "layer", "unknown layer"),
        ({"filters": [0, 512]}, "filters", "out of range"),
        ({"image_size": 100_000}, "image_size", "above the limit"),
        ({"image_size": 4}, "image_size", "too small"),
        ({"steps": 100_000}, "steps", "above the limit"),
        ({"steps": "many"}, "steps", "valid integer"),
        ({"grid": {"n": 0}}, "grid.n", "greater than or equal to 1"),
        ({"surprise": True}, "surprise", "Extra inputs"),
        ([1, 2, 3], "body", "not an object"),
    ],
)
def test_invalid_jobs_get_422_naming_the_field(api, body, field, words):
    response = requests.post(f"{api}/v1/jobs", json=body, timeout=10)
    assert response.status_code == 422
    problems = response.json()["error"]["problems"]
    assert any(p["field"] == field and words in p["reason"] for p in problems), problems


def test_malformed_wrong_type_and_oversized_bodies(api):
    malformed = requests.post(f"{api}/v1/jobs", data="{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    wrong_type = requests.post(f"{api}/v1/jobs", data="layer=block1_conv1")
    assert wrong_type.status_code == 415 and "application/json" in wrong_type.json()["error"]["message"]
    huge = requests.post(f"{api}/v1/jobs", json={"filters": list(range(100_000))})
    assert huge.status_code == 413 and huge.json()["error"]["code"]


@pytest.mark.parametrize(
    "path",
    [f"/v1/jobs/{UNKNOWN_ID}", "/v1/jobs/not-a-uuid", f"/v1/jobs/{UNKNOWN_ID}/grid.png",
     f"/v1/jobs/{UNKNOWN_ID}/manifest.json", f"/v1/jobs/{UNKNOWN_ID}/filters/1.png", "/v1/nothing"],
)  # fmt: skip
def test_unknown_ids_and_paths_get_json_404(api, path):
    response = requests.get(f"{api}{path}", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["message"]


def test_a_filter_outside_the_job_is_404_and_delete_of_an_unknown_job_is_404(api, finished_small_job):
    job_id, _ = finished_small_job
    response = requests.get(f"{api}/v1/jobs/{job_id}/filters/300.png", timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "filter_not_in_job"
    assert requests.delete(f"{api}/v1/jobs/{UNKNOWN_ID}", timeout=10).status_code == 404
    assert requests.put(f"{api}/v1/jobs", json={}, timeout=10).status_code == 405


def test_a_job_on_another_model_renders_it_on_the_same_workers(api):
    job = submit(api, {"model": "mobilenet_v2", "layer": "block_3_project_BN", "filters": {"start": 0, "stop": 4},
                       "image_size": 32, "method": "fourier", "steps": 2, "grid": {"n": 2}})  # fmt: skip
    done = wait_for(api, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    manifest = requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
    assert (manifest["params"]["model"], manifest["weights"]) == ("mobilenet_v2", TEST_WEIGHTS)
    assert [entry["index"] for entry in manifest["filters"]] == [0, 1, 2, 3]


def test_a_job_maximises_the_objective_it_asks_for(api):
    objective = [{"kind": "neuron", "x": 0.25, "y": 0.75}, {"kind": "layer", "weight": 0.01}]
    job = submit(api, {**SMALL_JOB, "method": "fourier", "steps": 3, "objective": objective})
    done = wait_for(api, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    manifest = requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
    assert [term["kind"] for term in manifest["params"]["objective"]] == ["neuron", "layer"]
    listed = requests.get(f"{api}/v1/models", timeout=10).json()["objectives"]
    assert [entry["kind"] for entry in listed] == ["channel", "neuron", "layer", "direction", "class", "diversity"]
    assert next(entry for entry in listed if entry["kind"] == "class")["classes"][130] == "flamingo"


def test_models_health_readiness_and_docs(api):
    models = requests.get(f"{api}/v1/models", timeout=10).json()["models"]
    assert [model["name"] for model in models] == list(ARCHITECTURES)
    assert models[0]["default_layer"] == "block5_conv1" and models[4]["min_image_size"] == 75  # inception_v3
    layers = models[0]["layers"]
    assert {"name": "block5_conv1", "filters": 512, "min_image_size": 16} in layers
    assert requests.get(f"{api}/healthz", timeout=10).json()["status"] == "ok"
    ready = requests.get(f"{api}/readyz", timeout=10).json()
    assert ready == {"status": "ready", "checks": {"redis": "ok", "s3": "ok"}, "workers": 2}
    document = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert "/v1/jobs/{job_id}/grid.png" in document["paths"]
    assert "JobSpec" in document["components"]["schemas"]
    assert "/v1/jobs" in requests.get(f"{api}/docs", timeout=10).text


def test_finished_job_answers_from_its_manifest_after_redis_is_flushed(stack, api, finished_small_job):
    job_id, seen = finished_small_job
    redis.Redis.from_url(stack.env["REDIS_URL"]).flushall()
    job = get_job(api, job_id)
    assert job["status"] == "succeeded"
    assert job["params"] == seen[-1]["params"] and job["weights"] == seen[-1]["weights"]
    assert job["created_at"] == seen[-1]["created_at"] and job["finished_at"] == seen[-1]["finished_at"]
    assert fetch_png(f"{api}{job['links']['grid']}").shape == (100, 100, 3)
