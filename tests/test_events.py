"""A job followed as Server-Sent Events on the real service: its state first, live frames while chunks
run, each stored filter, and `end`; Last-Event-ID resumes; the client's `wait` follows the stream."""

import base64
import gc
import re
import time

import pytest
import requests
from pydantic import ValidationError

from client.api import Client, WaitTimeout
from shared.pictures import decode_png
from shared.settings import Settings
from tests.service_helpers import SMALL_JOB, running_stack, submit, wait_for
from worker.frames import FRAME_SIDE

# Two chunks of four filters, each long enough to show frames before it is stored.
WATCHED_JOB = {**SMALL_JOB, "filters": {"start": 0, "stop": 8}, "image_size": 64, "steps": 40, "seed": 31,
               "cache": False}  # fmt: skip


@pytest.fixture(scope="module")
def api(service_stack):
    return service_stack.api_url


def test_a_stream_shows_frames_then_each_stored_filter_and_ends(api):
    job = submit(api, WATCHED_JOB)
    with Client(api) as client:
        events = list(client.follow(job["id"]))
    kinds = [event.kind for event in events]
    assert kinds[:2] == ["status", "progress"] and kinds[-2:] == ["status", "end"]
    assert events[-1].data == {"status": "succeeded"}
    frames = [event for event in events if event.kind == "frame"]
    stored = [event for event in events if event.kind == "filters"]
    # Each filter is seen forming before its picture is stored.
    first_frame = {entry["index"]: kinds.index("frame") for entry in frames[0].data["filters"]}
    stored_at = {entry["index"]: events.index(event) for event in stored for entry in event.data["filters"]}
    assert sorted(stored_at) == list(range(8))
    assert all(at < stored_at[index] for index, at in first_frame.items())
    entry = frames[0].data["filters"][0]
    picture = decode_png(base64.b64decode(entry["picture"].removeprefix("data:image/png;base64,")))
    assert picture.shape == (FRAME_SIDE, FRAME_SIDE, 3) and isinstance(entry["loss"], float)
    assert 1 <= frames[0].data["step"] <= frames[0].data["steps"] == 40
    url = stored[0].data["filters"][0]["url"]
    assert requests.get(f"{api}{url}", timeout=10).headers["Content-Type"] == "image/png"
    done = [event.data["done"] for event in events if event.kind == "progress"]
    assert done == sorted(done) and done[-1] == 8
    ids = [event.id for event in events[2:-1]]  # `end` repeats the id of the move that ended the job
    assert len(set(ids)) == len(ids) and events[-1].id == events[-2].id


def test_last_event_id_resumes_after_it(api):
    job = submit(api, {**WATCHED_JOB, "seed": 32})
    with Client(api) as client:
        first = next(event for event in client.follow(job["id"]) if event.kind == "frame")
        resumed = list(client.follow(job["id"], last_event_id=first.id))
    relayed = resumed[3:] if resumed[2].kind == "filters" else resumed[2:]  # after the state
    assert relayed and all(_order(event.id) > _order(first.id) for event in relayed)
    assert resumed[-1].data == {"status": "succeeded"}


def test_a_finished_jobs_stream_is_its_state_and_end(api):
    job = submit(api, {**SMALL_JOB, "seed": 33})
    wait_for(api, job["id"], {"succeeded"})
    with Client(api) as client:
        events = list(client.follow(job["id"]))
    assert [event.kind for event in events] == ["status", "progress", "filters", "end"]
    assert len(events[2].data["filters"]) == 16 and events[3].data == {"status": "succeeded"}


def test_wait_follows_the_stream_and_hears_frames(api):
    heard, seen = [], []
    with Client(api) as client:
        job = client.submit({**WATCHED_JOB, "seed": 34})
        finished = client.wait(job.id, timeout=300, on_event=heard.append, on_progress=seen.append)
    assert finished.status == "succeeded" and finished.resource["links"]["grid"]
    assert "frame" in {event.kind for event in heard} and heard[-1].kind == "end"
    assert seen[-1].status == "succeeded" and [job.done for job in seen] == sorted(job.done for job in seen)


@pytest.mark.parametrize(
    ("job_id", "headers", "status"),
    [("00000000-0000-4000-8000-000000000000", {}, 404), ("not-a-job", {}, 404), (None, {"Last-Event-ID": "x"}, 422)],
)
def test_a_stream_asked_wrong_is_a_4xx(api, job_id, headers, status):
    job_id = job_id or submit(api, {**SMALL_JOB, "seed": 35})["id"]
    answer = requests.get(f"{api}/v1/jobs/{job_id}/events", headers=headers, timeout=10)
    assert answer.status_code == status and answer.json()["error"]["message"]


@pytest.mark.stack  # starts its own stack
def test_past_its_streams_an_api_process_says_503_and_wait_polls_instead(tmp_path):
    # One API process with one stream slot, and no worker: the job stays queued.
    env = {"FILTERVIZ_EVENT_STREAMS": "1", "FILTERVIZ_API_WORKERS": "1"}
    with running_stack(tmp_path, [], chunk_size=4, env=env) as stack, Client(stack.api_url) as client:
        job = client.submit({**SMALL_JOB, "seed": 36})
        held = requests.get(f"{stack.api_url}/v1/jobs/{job.id}/events", stream=True, timeout=10)
        # The line reader kept in hand: once collected, it closes the connection (urllib3), and the
        # stream with it (a garbage collection at the wrong moment did, now and then).
        lines = held.iter_lines()
        assert held.status_code == 200 and next(lines) == b"retry: 1000"
        gc.collect()  # it would, without `lines`
        assert _open_streams(stack.api_url) == 1
        refused = requests.get(f"{stack.api_url}/v1/jobs/{job.id}/events", timeout=10)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert "holds 1 event streams" in refused.json()["error"]["message"]
        seen = []
        with pytest.raises(WaitTimeout):  # it polled (on_progress heard each poll's job) until its timeout
            client.wait(job.id, timeout=4, poll_seconds=0.2, on_progress=seen.append)
        assert seen and seen[-1].status == "queued"
        held.close()  # the slot comes back with the connection
        # once the server's writes find it closed: a keepalive or two (3 s apart), later on a loaded machine
        deadline = time.monotonic() + 30
        while (
            again := requests.get(f"{stack.api_url}/v1/jobs/{job.id}/events", stream=True, timeout=10)
        ).status_code == 503 and time.monotonic() < deadline:
            again.close()
            time.sleep(0.2)
        assert again.status_code == 200
        again.close()


def test_event_streams_default_to_half_the_threads_and_leave_some_for_polls():
    assert Settings(api_threads=32).event_stream_slots == 16
    assert Settings(api_threads=8, event_streams=7).event_stream_slots == 7
    refused = r"FILTERVIZ_EVENT_STREAMS \(8\) must be below FILTERVIZ_API_THREADS \(8\)"
    with pytest.raises(ValidationError, match=refused):
        Settings(api_threads=8, event_streams=8)


def _open_streams(api: str) -> float:
    """What /metrics counts as open event streams."""
    found = re.search(r"^filterviz_event_streams_open (\S+)$", requests.get(f"{api}/metrics", timeout=10).text, re.M)
    assert found, "no filterviz_event_streams_open in /metrics"
    return float(found.group(1))


def _order(event_id: str) -> tuple[int, int]:
    milliseconds, sequence = event_id.split("-")
    return int(milliseconds), int(sequence)
