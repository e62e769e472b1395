"""The atlas on the real stack: a small one (two block1 layers, a few filters each) completes after its
worker is killed midway and another takes over, keeps the chunks done before, and resumes from the
cache when asked again."""

import json
import signal
import time

import pytest
import requests

from cli.main import main
from shared.storage import Storage, job_key
from tests.service_helpers import running_stack

SEED = 7  # the fault worker pauses 3 s before storing each chunk of a job with this seed
ATLAS = {"layers": ["block1_conv1", "block1_conv2"], "filters_per_layer": 4, "image_size": 32, "steps": 2,
         "seed": SEED}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"FILTERVIZ_TEST_PAUSE_SEED": str(SEED), "FILTERVIZ_LEASE_SECONDS": "5", "FILTERVIZ_SWEEP_SECONDS": "2"}
    with running_stack(tmp_path_factory.mktemp("atlas-stack"), ["a1"], chunk_size=2,
                       worker_app="tests.fault_worker", env=env) as stack:  # fmt: skip
        yield stack


def atlas(api: str, atlas_id: str) -> dict:
    response = requests.get(f"{api}/v1/atlas/{atlas_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_atlas(api: str, atlas_id: str, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = atlas(api, atlas_id)
        if until(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"atlas {atlas_id}: {found['status']} {found['progress']} after {timeout} s")


def manifest(api: str, job_id: str) -> dict:
    return requests.get(f"{api}/v1/jobs/{job_id}/manifest.json", timeout=10).json()


def test_an_atlas_completes_after_its_worker_dies_and_resumes_from_the_cache(stack):
    api = stack.api_url
    started = requests.post(f"{api}/v1/atlas", json=ATLAS, timeout=10)
    assert started.status_code == 202, started.text
    first = started.json()
    assert [layer["layer"] for layer in first["layers"]] == ATLAS["layers"]
    assert first["progress"]["total"] == 8 and started.headers["Location"] == f"/v1/atlas/{first['id']}"

    # One chunk stored, the whole worker dies (in its next chunk's pause); another takes over.
    storage, jobs = Storage(stack.settings), [job for layer in first["layers"] for job in layer["jobs"]]
    wait_atlas(api, first["id"], lambda _: any(storage.list_keys(job_key(job, "chunks/")) for job in jobs))
    stack.stop("a1", signal.SIGKILL)
    stack.start_worker("a2", app="tests.fault_worker")
    done = wait_atlas(api, first["id"], lambda a: a["status"] in {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"done": 8, "total": 8}
    assert done["weights"] == "random:3"
    runs = [chunk["worker"] for layer in done["layers"] for job in layer["jobs"]
            for chunk in manifest(api, job)["timings"]["chunks"]]  # fmt: skip
    # the chunk done before the kill was not redone
    workers = [run.partition(":")[0] for run in runs]
    assert len(workers) == 4 and "a1" in workers and "a2" in workers

    units = requests.get(f"{api}/v1/atlas/{first['id']}/layers/block1_conv2", timeout=10).json()["units"]
    assert [unit["index"] for unit in units] == [0, 1, 2, 3]
    picture = requests.get(f"{api}{units[2]['picture']}?size=16", timeout=10)
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
    assert units[2]["links"]["page"] == "/atlas/vgg16/block1_conv2/2"

    # Asked again: the same atlas, nothing new to do.
    again = requests.post(f"{api}/v1/atlas", json=ATLAS, timeout=10)
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    assert [layer["jobs"] for layer in again.json()["layers"]] == [layer["jobs"] for layer in done["layers"]]

    # A job of the atlas deleted: asking again submits it anew, and it is answered from the cache.
    gone = done["layers"][0]["jobs"][0]
    assert requests.delete(f"{api}/v1/jobs/{gone}", timeout=10).status_code == 204
    resumed = requests.post(f"{api}/v1/atlas", json=ATLAS, timeout=10).json()
    fresh = resumed["layers"][0]["jobs"][0]
    assert fresh != gone and resumed["status"] == "succeeded"
    assert manifest(api, fresh)["cache"] == {"hits": 4, "rendered": 0, "pixels_version": 1}

    listed = requests.get(f"{api}/v1/atlas", timeout=10).json()["atlases"]
    assert [a["id"] for a in listed] == [first["id"]]


def test_filterviz_atlas_follows_it_on_the_service(stack, capsys):
    args = ["atlas", "--layers", "block1_conv1,block1_conv2", "--filters-per-layer", "4", "--size", "32",
            "--steps", "2", "--seed", str(SEED), "--api", stack.api_url]  # fmt: skip
    assert main(args) == 0
    assert "succeeded: 8/8 filters" in capsys.readouterr().out


def test_filterviz_atlas_renders_here_and_resumes(tmp_path, capsys):
    args = ["atlas", "--layers", "block1_conv1", "--filters-per-layer", "2", "--size", "32", "--steps", "2",
            "--weights", "random:1", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((tmp_path / "block1_conv1" / "manifest.json").read_text())
    assert [f["index"] for f in manifest["filters"]] == [0, 1] and manifest["params"]["seed"] == 0
    (tmp_path / "block1_conv1" / "grid.png").unlink()  # a finished folder is not rendered again
    assert main(args) == 0
    assert "1 of 1 layers already" in capsys.readouterr().out
    assert not (tmp_path / "block1_conv1" / "grid.png").exists()
