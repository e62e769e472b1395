"""The Python client and `filterviz submit`: against a local server that answers 429/503, then the real stack."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from cli.main import main
from cli.submit_command import CANCELED, FAILED, REFUSED, SUCCEEDED, TIMED_OUT, UNAVAILABLE, USAGE
from client import ApiError, Client
from devstack.local import free_port
from shared.pictures import decode_png
from tests.service_helpers import SMALL_JOB, running_stack

SMALL_ARGS = [
    "--layer",
    "block3_conv1",
    "--filters",
    "0-15",
    "--size",
    "32",
    "--steps",
    "4",
    "--grid",
    "3",
    "--margin",
    "2",
]  # fmt: skip  (SMALL_JOB as options)
# One chunk of many steps: still running when the test cancels it or lets its deadline pass.
SLOW_ARGS = ["--layer", "block5_conv1", "--filters", "0-3", "--size", "64", "--steps", "200"]
JOB_ID = "0f0e0d0c-0000-4000-8000-000000000000"
QUEUED = {"id": JOB_ID, "status": "queued", "progress": {"done": 0, "total": 4}, "error": None, "weights": None,
          "links": {"self": f"/v1/jobs/{JOB_ID}"}}  # fmt: skip


@contextmanager
def local_api(respond) -> Iterator[dict]:
    """A local server: respond(method, path, seen) -> (status, headers, JSON body) answers each request;
    `seen` has its url and every request's (method, path, Authorization header)."""
    seen: dict = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["requests"].append((self.command, self.path, self.headers.get("Authorization")))
            status, headers, answer = respond(self.command, self.path, seen)
            body = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    seen["url"] = f"http://127.0.0.1:{http.server_port}"
    try:
        yield seen
    finally:
        http.shutdown()
        http.server_close()


@contextmanager
def answering(*answers: tuple[int, dict[str, str]]) -> Iterator[dict]:
    """A local API whose POST /v1/jobs gives each (status, headers) in turn, the last one for good."""
    posts: list[float] = []

    def respond(method: str, path: str, seen: dict) -> tuple[int, dict[str, str], dict]:
        posts.append(time.monotonic())
        status, headers = answers[min(len(posts), len(answers)) - 1]
        return status, headers, QUEUED if status == 202 else {"error": {"code": "busy", "message": "try later"}}

    with local_api(respond) as seen:
        seen["posts"] = posts
        yield seen


def test_a_429_is_retried_after_its_retry_after():
    with answering((429, {"Retry-After": "1"}), (202, {"Location": QUEUED["links"]["self"]})) as api:
        job = Client(api["url"]).submit({"filters": [0, 1, 2, 3]})
        assert (job.id, job.status, job.total) == (QUEUED["id"], "queued", 4)
        first, second = api["posts"]
        assert second - first >= 0.9  # waited as told, not the backoff's fraction of a second


def test_a_429_that_asks_for_an_hour_is_raised_at_once_not_slept_through():
    with answering((429, {"Retry-After": "3600"})) as api:
        with pytest.raises(ApiError) as refused:
            Client(api["url"]).submit({"filters": [0, 1, 2, 3]})
        assert len(api["posts"]) == 1
    assert (refused.value.status, refused.value.retry_after) == (429, "3600")
    assert str(refused.value) == "429 busy: try later (Retry-After: 3600)"


def test_submit_says_unavailable_once_retries_are_spent_and_when_nothing_answers(capsys):
    with answering((503, {"Retry-After": "1"})) as api:
        assert main(["submit", "--api", api["url"], "--retries", "2", *SMALL_ARGS]) == UNAVAILABLE
        assert len(api["posts"]) == 3  # the first try and two retries
    assert "503 busy: try later" in capsys.readouterr().err
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert main(["submit", "--api", unreachable, "--retries", "1", *SMALL_ARGS]) == UNAVAILABLE
    assert "could not be reached" in capsys.readouterr().err


def links_to(base: str, manifest: str) -> dict:
    """A succeeded job's resource whose links are under `base`, its manifest's at `manifest`."""
    links = {"manifest": manifest, "grid": f"{base}/v1/jobs/{JOB_ID}/grid.png",
             "filter": f"{base}/v1/jobs/{JOB_ID}/filters/{{index}}.png"}  # fmt: skip
    return {**QUEUED, "status": "succeeded", "links": links}


def test_the_token_goes_to_the_apis_own_origin_only(tmp_path):
    # A server (or whoever controls its answers) names links on another origin: they get no token.
    with local_api(lambda method, path, seen: (200, {}, {"filters": []})) as elsewhere:

        def api(method: str, path: str, seen: dict) -> tuple[int, dict, dict]:
            manifest = f"{elsewhere['url']}/m/manifest.json"
            return 200, {}, {"filters": []} if path.endswith("manifest.json") else links_to(seen["url"], manifest)

        with local_api(api) as own, Client(own["url"], token="secret-token") as client:
            client.download(JOB_ID, tmp_path)
    assert elsewhere["requests"] and all(auth is None for _, _, auth in elsewhere["requests"])
    assert own["requests"] and all(auth == "Bearer secret-token" for _, _, auth in own["requests"])


@pytest.mark.parametrize("index", ["../../escaped", "/tmp/escaped", -1, 1.5, True])
def test_download_writes_nothing_outside_its_folder(tmp_path, index):
    def api(method: str, path: str, seen: dict) -> tuple[int, dict, dict]:
        if path.endswith("manifest.json"):
            return 200, {}, {"filters": [{"index": index, "loss": 1.0, "dead": False}]}
        return 200, {}, links_to("", f"/v1/jobs/{JOB_ID}/manifest.json")

    out = tmp_path / "out"
    with local_api(api) as own, Client(own["url"]) as client, pytest.raises(ApiError, match="filter index"):
        client.download(JOB_ID, out)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written, in the folder or beside it


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"FILTERVIZ_SUBMIT_RATE_LIMIT": "off"}
    with running_stack(tmp_path_factory.mktemp("client"), ["alpha"], chunk_size=16, env=env) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack):
    return stack.api_url


def test_submit_waits_and_downloads_grid_filters_and_manifest(api, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["submit", "--api", api, *SMALL_ARGS, "--seed", "21", "--wait", "--out", str(out)]) == SUCCEEDED
    assert "succeeded" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(entry["index"] for entry in manifest["filters"]) == list(range(16))
    assert sorted(int(p.stem) for p in (out / "filters").glob("*.png")) == list(range(16))
    side = 3 * 32 + 2 * 2
    assert decode_png((out / "grid.png").read_bytes()).shape == (side, side, 3)
    assert decode_png((out / "filters" / "5.png").read_bytes()).shape == (32, 32, 3)


def test_client_waits_with_progress_lists_and_downloads(api, tmp_path):
    seen = []
    with Client(api) as client:
        job = client.submit({**SMALL_JOB, "seed": 22})
        assert client.list(limit=1)[0].id == job.id
        final = client.wait(job.id, timeout=120, poll_seconds=0.1, on_progress=seen.append)
        manifest = client.download(job.id, tmp_path)
    assert final.status == "succeeded" and final.done == final.total == 16
    assert seen[-1] == final and [j.done for j in seen] == sorted(j.done for j in seen)
    assert manifest["params"]["seed"] == 22
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_request_the_api_refuses_exits_5(api, capsys):
    assert main(["submit", "--api", api, *SMALL_ARGS, "--size", "4096"]) == REFUSED
    assert "422" in capsys.readouterr().err
    assert main(["submit", "--api", api, *SMALL_ARGS, "--out", "nowhere"]) == USAGE  # --out needs --wait
    assert "--out and --timeout need --wait" in capsys.readouterr().err


def run_submit_in_background(argv: list[str]) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(code=main(argv)))
    thread.start()
    return thread, result


def newest_job_with_seed(client: Client, seed: int) -> str:
    for _ in range(100):
        listed = client.list(limit=1)
        if listed and listed[0].resource["params"]["seed"] == seed:
            return listed[0].id
        time.sleep(0.1)
    raise AssertionError(f"no job with seed {seed} was submitted")


def test_submit_exits_3_when_its_job_is_canceled(api):
    thread, result = run_submit_in_background(["submit", "--api", api, *SLOW_ARGS, "--seed", "31", "--wait"])
    with Client(api) as client:
        canceled = client.cancel(newest_job_with_seed(client, 31))
    thread.join(60)
    assert canceled.status == "canceled"
    assert result["code"] == CANCELED


def test_submit_exits_1_when_its_job_fails(api, stack):
    thread, result = run_submit_in_background(["submit", "--api", api, *SLOW_ARGS, "--seed", "32", "--wait"])
    with Client(api) as client:
        job_id = newest_job_with_seed(client, 32)
        # The job's deadline passes now: a failure the service detects itself (deadline_exceeded).
        redis.Redis.from_url(stack.env["REDIS_URL"]).hset(f"filterviz:job:{job_id}", "deadline", f"{time.time():.3f}")
        thread.join(60)
        assert result["code"] == FAILED
        assert client.get(job_id).error["code"] == "deadline_exceeded"


def test_submit_exits_4_when_its_wait_times_out_and_the_job_goes_on(api):
    assert main(["submit", "--api", api, *SLOW_ARGS, "--seed", "33", "--wait", "--timeout", "1"]) == TIMED_OUT
    with Client(api) as client:
        job_id = newest_job_with_seed(client, 33)
        assert client.get(job_id).status in {"queued", "running"}
        assert client.cancel(job_id).status == "canceled"
        with pytest.raises(ApiError) as again:
            client.cancel(job_id)
    assert again.value.status == 409
