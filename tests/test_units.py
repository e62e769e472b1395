"""Units on demand, on the real service: a unit never rendered is queued and then served from the cache;
visitors asking together share one job; a visitor's renders in flight are bounded."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import urllib3

from shared.pictures import decode_png
from tests.service_helpers import SMALL_JOB, get_job, submit, wait_for


@pytest.fixture(scope="module")
def api(service_stack):
    return service_stack.api_url


def visitor(api: str, address: str):
    """GET from one loopback address: (status, headers, body bytes)."""
    pool = urllib3.PoolManager(source_address=(address, 0), retries=False, timeout=30)

    def get(path: str) -> tuple[int, dict, bytes]:
        response = pool.request("GET", f"{api}{path}")
        return response.status, response.headers, response.data

    return get


def test_a_unit_is_rendered_on_first_sight_then_served_from_the_cache(api):
    path = "/v1/units/vgg16/block1_conv1/3.png?size=32&method=fourier"
    first = requests.get(f"{api}{path}", timeout=30)
    assert first.status_code == 202, first.text
    assert first.headers["Location"].startswith("/v1/jobs/") and int(first.headers["Retry-After"]) > 0
    job_id = first.json()["job"]
    again = requests.get(f"{api}{path}", timeout=30)  # while it renders: the same job, not a second
    assert again.status_code in (200, 202) and (again.status_code == 200 or again.json()["job"] == job_id)
    deadline = time.monotonic() + 120
    while (answer := requests.get(f"{api}{path}", timeout=30)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(int(answer.headers["Retry-After"]))
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Cache-Control"] == "public, max-age=86400"
    assert decode_png(answer.content).shape == (32, 32, 3)
    record = requests.get(f"{api}/v1/units/vgg16/block1_conv1/3?size=32&method=fourier", timeout=30).json()
    assert (record["unit"], record["method"], record["job"]) == (3, "fourier", job_id)
    assert isinstance(record["loss"], float) and record["weights"]
    # The unit's picture is served as soon as it is stored; the job stitches its grid a moment later.
    job = wait_for(api, job_id, {"succeeded", "failed"})
    assert (job["status"], job["params"]["filters"], job["params"]["image_size"]) == ("succeeded", [3], 32)


def test_a_unit_under_another_objective_is_its_own_render(api):
    path = "/v1/units/vgg16/block1_conv1/5.png?size=32&method=fourier"
    plain = requests.get(f"{api}{path}", timeout=30).json()["job"]
    neuron = requests.get(f"{api}{path}&objective=neuron:x=0.25,y=0.75", timeout=30)
    assert neuron.status_code == 202 and neuron.json()["job"] != plain
    job = wait_for(api, neuron.json()["job"], {"succeeded", "failed"})
    assert job["status"] == "succeeded" and job["params"]["objective"][0]["kind"] == "neuron"
    picture = requests.get(f"{api}{path}&objective=neuron:x=0.25,y=0.75", timeout=30)
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"


def test_visitors_asking_at_once_share_one_render(api):
    path = "/v1/units/vgg16/block2_conv1/7.png?size=32&method=fourier"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{api}{path}", timeout=30), range(6)))
    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["job"] for answer in answers}) == 1


def test_on_demand_renders_and_a_big_job_progress_together(api):
    big = submit(api, {**SMALL_JOB, "filters": {"start": 0, "stop": 128}, "image_size": 64, "steps": 30,
                       "seed": 11, "cache": False})  # fmt: skip
    wait_for(api, big["id"], {"running", "succeeded"})
    get = visitor(api, "127.0.0.43")
    asked = [get(f"/v1/units/vgg16/block1_conv2/{unit}.png?size=32&method=fourier") for unit in (20, 21)]
    assert [status for status, _, _ in asked] == [202, 202]
    done_when_asked = get_job(api, big["id"])["progress"]["done"]
    rendered = [wait_for(api, json.loads(body)["job"], {"succeeded", "failed"}) for _, _, body in asked]
    assert [job["status"] for job in rendered] == ["succeeded", "succeeded"]
    # The units came before the big job's end, and it went on meanwhile: neither waited for the other.
    meanwhile = get_job(api, big["id"])
    assert meanwhile["status"] == "running" and meanwhile["progress"]["done"] > done_when_asked, meanwhile
    assert requests.post(f"{api}/v1/jobs/{big['id']}/cancel", json={}, timeout=30).status_code == 200


def test_a_visitor_has_a_bound_on_renders_in_flight(api):
    get = visitor(api, "127.0.0.41")
    # Deep and large enough that none ends before the fifth is asked for.
    statuses = [get(f"/v1/units/vgg16/block5_conv3/{unit}.png?size=128")[0] for unit in range(5)]
    assert statuses == [202, 202, 202, 202, 429]
    status, headers, body = get("/v1/units/vgg16/block5_conv3/5.png?size=128")
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert "4 units are rendering for 127.0.0.41" in json.loads(body)["error"]["message"]
    assert visitor(api, "127.0.0.42")("/v1/units/vgg16/block5_conv3/9.png?size=128")[0] == 202  # another visitor


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/v1/units/vgg17/block1_conv1/0.png", 404, "no unit 0"),
        ("/v1/units/vgg16/block9_conv1/0.png", 404, "no unit 0"),
        ("/v1/units/vgg16/block1_conv1/64.png", 404, "no unit 64"),
        ("/v1/units/vgg16/block1_conv1/0.png?method=magic", 422, "method: one of"),
        ("/v1/units/vgg16/block5_conv1/0.png?size=8", 422, "too small for block5_conv1"),
        ("/v1/units/vgg16/block1_conv1/0.png?size=big", 422, "image_size"),
        ("/v1/units/vgg16/block1_conv1/60", 404, "not rendered yet"),
        (
            "/v1/units/vgg16/block1_conv1/0.png?objective=neuron:x=left",
            422,
            "objective.0.neuron.x: Input should be a valid number",
        ),
        ("/v1/units/vgg16/block1_conv1/0.png?objective=layer", 422, "objective"),
    ],
)
def test_a_unit_named_wrong_is_a_4xx_saying_why(api, path, status, words):
    answer = requests.get(f"{api}{path}", timeout=30)
    assert answer.status_code == status and words in answer.json()["error"]["message"], answer.text
