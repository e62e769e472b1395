"""The result cache on the real stack: a repeated request computes nothing (and needs no worker), an
overlapping one computes only what it misses, `"cache": false` computes everything, other weights miss."""

import time

import pytest
import requests

from shared import cache
from shared.jobs import job_store
from shared.numerics import numerics_identity
from shared.spec import parse_spec
from shared.storage import Storage, job_key
from tests.conftest import TEST_WEIGHTS
from tests.service_helpers import running_stack, submit, wait_for

JOB = {"layer": "block1_conv1", "filters": {"start": 0, "stop": 8}, "image_size": 32, "steps": 2,
       "grid": {"n": 3, "margin": 1}, "seed": 11}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cache-stack"), ["c1"], chunk_size=4) as stack:
        yield stack


def run(api: str, job: dict) -> dict:
    """Submit and wait; the job's manifest."""
    job_id = submit(api, job)["id"]
    assert wait_for(api, job_id, {"succeeded", "failed"})["status"] == "succeeded"
    return requests.get(f"{api}/v1/jobs/{job_id}/manifest.json", timeout=10).json()


def chunk_records(stack, job_id: str) -> list[str]:
    """What the workers rendered for the job: one record per chunk that ran."""
    return Storage(stack.settings).list_keys(job_key(job_id, "chunks/"))


def grid(api: str, job_id: str) -> bytes:
    return requests.get(f"{api}/v1/jobs/{job_id}/grid.png", timeout=10).content


def test_cache_hits_misses_and_weights(stack):
    api = stack.api_url
    first = run(api, JOB)
    assert first["cache"] == {"hits": 0, "rendered": 8, "pixels_version": 1}
    assert first["weights"] == TEST_WEIGHTS

    # Overlapping: filters 4..7 are cached, only 8..11 are rendered, in one chunk of 4.
    overlap = run(api, {**JOB, "filters": {"start": 4, "stop": 12}})
    assert overlap["cache"]["hits"] == 4 and overlap["cache"]["rendered"] == 4
    assert sorted(f["index"] for f in overlap["filters"] if "cache" in f) == [4, 5, 6, 7]
    assert len(chunk_records(stack, overlap["id"])) == 1
    listed = requests.get(f"{api}/v1/jobs/{overlap['id']}/filters", timeout=10).json()["filters"]
    assert [f["index"] for f in listed] == list(range(4, 12))
    shared = requests.get(f"{api}/v1/jobs/{overlap['id']}/filters/5.png", timeout=10)
    assert shared.status_code == 200
    assert shared.content == requests.get(f"{api}/v1/jobs/{first['id']}/filters/5.png", timeout=10).content

    # "cache": false renders everything again, to the same pictures.
    fresh = run(api, {**JOB, "cache": False})
    assert fresh["cache"]["hits"] == 0 and fresh["cache"]["rendered"] == 8
    assert grid(api, fresh["id"]) == grid(api, first["id"])

    # Without any worker, the identical request succeeds at once from the cache.
    stack.stop("c1")
    answered = submit(api, JOB)
    assert answered["status"] == "succeeded", answered
    assert answered["progress"] == {"done": 8, "total": 8}
    again = requests.get(f"{api}/v1/jobs/{answered['id']}/manifest.json", timeout=10).json()
    assert again["cache"]["hits"] == 8 and again["cache"]["rendered"] == 0
    assert chunk_records(stack, answered["id"]) == []
    assert grid(api, answered["id"]) == grid(api, first["id"])
    assert again["weights"] == TEST_WEIGHTS

    # A worker with other weights: the API keys by its weights, so nothing is shared.
    stack.extra_env["FILTERVIZ_WEIGHTS"] = "random:4"
    stack.start_worker("c2")
    other = run(api, JOB)
    assert other["weights"] == "random:4"
    assert other["cache"]["hits"] == 0 and other["cache"]["rendered"] == 8
    assert grid(api, other["id"]) != grid(api, first["id"])


def test_retention_keeps_the_entries_jobs_refer_to(stack):
    """Run after the test above: its jobs referred to filters 0..7 under random:3 as hits."""
    storage, redis = Storage(stack.settings), job_store(stack.settings).redis
    entries = {key.removeprefix("cache/").split(".")[0] for key in storage.list_keys("cache/")}
    assert len(entries) > 12  # 0..11 under random:3, 0..7 under random:4, grids
    grids = {entry for entry in entries if entry.startswith("grid-")}
    # Used recently: no filter's entry goes, however old; grids (copied by jobs, never referred to) do.
    assert cache.expire(redis, storage, ttl_seconds=0, now=time.time() + 60) == len(grids) > 0
    redis.delete(*redis.keys(cache.CACHE_INDEX + "*"))  # as if unused for FILTERVIZ_CACHE_DAYS
    deleted = cache.expire(redis, storage, ttl_seconds=0, now=time.time() + 60)
    kept = {key.removeprefix("cache/").split(".")[0] for key in storage.list_keys("cache/")}
    assert kept == cache.referenced(storage) and len(kept) == 8 and deleted == len(entries - grids) - 8
    spec = parse_spec(JOB)
    assert kept == {cache.entry_hash(spec, TEST_WEIGHTS, index) for index in range(8)}


def test_low_precision_pictures_never_share_an_identity_with_float32_ones():
    spec = parse_spec({"layer": "block1_conv1", "filters": [0], "image_size": 32, "steps": 2, "seed": 1})
    float32 = numerics_identity("random:1", "float32")
    bf16 = numerics_identity("random:1", "bfloat16")
    assert float32 == "random:1" and bf16 == "random:1@bfloat16"
    assert cache.entry_hash(spec, float32, 0) != cache.entry_hash(spec, bf16, 0)


def test_an_entry_whose_picture_is_gone_is_a_miss_and_is_rendered_again(stack):
    """Run last: the index outlives its objects when a bucket is restored, expired or cleaned by hand."""
    api, storage = stack.api_url, Storage(stack.settings)
    job = {**JOB, "filters": [0, 1, 2, 3], "seed": 12}
    first = run(api, job)
    spec = parse_spec(job)
    picture = {index: cache.picture_key(cache.entry_hash(spec, first["weights"], index)) for index in range(4)}
    assert storage.delete_prefix(picture[2]) == 1

    again = run(api, job)
    assert again["cache"]["hits"] == 3 and again["cache"]["rendered"] == 1
    assert storage.exists(picture[2])  # the rendering put it back
    for index in range(4):
        assert requests.get(f"{api}/v1/jobs/{again['id']}/filters/{index}.png", timeout=10).status_code == 200

    # Every picture gone (an old backup restored): was "succeeded" from the grid cache, with four 404s.
    for key in picture.values():
        storage.delete_prefix(key)
    third = run(api, job)
    assert third["cache"]["hits"] == 0 and third["cache"]["rendered"] == 4
    for index in range(4):
        assert requests.get(f"{api}/v1/jobs/{third['id']}/filters/{index}.png", timeout=10).status_code == 200
    assert grid(api, third["id"]) == grid(api, first["id"])
