"""`Client`: the filterviz HTTP API from Python (submit, wait, follow, download, cancel, list); requests
(and sseclient-py, which reads event streams over it) only.

Retries (urllib3's Retry under requests): a connection that could not be made, and answers 429
(too many jobs or submissions) and 503 (Redis or storage down), are retried for every method,
POST included, after the server's `Retry-After` (else an exponential backoff). An answer that asks
for a longer wait than MAX_RETRY_AFTER_SECONDS (an hourly submission limit) is not waited for: it is
raised at once, its `retry_after` saying when to come back.

The token goes only to the API's own origin (scheme, host and port of `base_url`): a link the server
answers with that points elsewhere is fetched without it. `download` writes only inside its folder. That is safe for
POST because the API gives 429 and 503 before it records a job, and a refused connection sent
nothing. Read errors (timeouts, dropped answers) are not retried: a POST whose answer was lost
may have created a job, and a second POST would make a duplicate.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from sseclient import SSEClient
from urllib3 import BaseHTTPResponse
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

FINISHED = frozenset({"succeeded", "failed", "canceled"})
# The kinds of event a job's stream (GET /v1/jobs/{id}/events) carries that `wait` reads; `end` is last.
STATUS, PROGRESS, END = "status", "progress", "end"
RETRIED_STATUSES = (429, 503)
# The longest Retry-After the client sleeps through (urllib3 would sleep up to 6 hours, each retry).
MAX_RETRY_AFTER_SECONDS = 60
# (connect, read) seconds per request: connecting is quick or hopeless; an answer may take a while.
DEFAULT_TIMEOUT = (5.0, 30.0)


class BoundedRetry(Retry):
    """urllib3's Retry, except that an answer asking to wait past MAX_RETRY_AFTER_SECONDS ends the
    retries: urllib3 then hands that answer back (raise_on_status=False), as when retries are spent."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None and (self.get_retry_after(response) or 0) > MAX_RETRY_AFTER_SECONDS:
            said = ResponseError(f"Retry-After {response.headers['Retry-After']}")
            raise MaxRetryError(_pool, url or "", said)  # type: ignore[arg-type]  # urllib3 takes a None pool
        return super().increment(method, url, response, error, _pool, _stacktrace)


class ApiError(Exception):
    """The API refused a request, or could not be reached; `status` is None for the latter."""

    def __init__(self, status: int | None, code: str, message: str, retry_after: str | None = None) -> None:
        when = f" (Retry-After: {retry_after})" if retry_after else ""
        super().__init__(f"{status or 'no answer'} {code}: {message}{when}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class WaitTimeout(Exception):
    """The job had not finished when `wait` gave up; `job` is what it last looked like."""

    def __init__(self, job: "Job", seconds: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {seconds:g} s")
        self.job = job


@dataclass(frozen=True)
class Job:
    """A job as the API describes it; `resource` keeps the whole JSON (params, links, timestamps)."""

    id: str
    status: str
    done: int
    total: int
    error: dict[str, Any] | None
    weights: str | None
    resource: dict[str, Any]

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> "Job":
        progress = resource.get("progress") or {}
        return cls(
            id=resource["id"],
            status=resource["status"],
            done=int(progress.get("done", 0)),
            total=int(progress.get("total", 0)),
            error=resource.get("error"),
            weights=resource.get("weights"),
            resource=resource,
        )

    @property
    def finished(self) -> bool:
        """succeeded, failed or canceled: the status won't change again."""
        return self.status in FINISHED


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: its id (what resumes the stream after it), kind and data."""

    id: str | None
    kind: str
    data: dict[str, Any]


class _Watch:
    """What `wait` knows of a job as events or polls come in; tells `on_progress` of each change."""

    def __init__(self, job: Job, on_progress: Callable[[Job], None] | None) -> None:
        self.job = job
        self._on_progress = on_progress
        if on_progress is not None:
            on_progress(job)

    def heard(self, event: Event) -> None:
        if event.kind == STATUS:
            self.seen(replace(self.job, status=event.data["status"]))
        elif event.kind == PROGRESS:
            self.seen(replace(self.job, done=event.data["done"], total=event.data["total"]))

    def ended(self, job: Job) -> Job:
        """The job as it ended, whole (links, timestamps): the last that `on_progress` hears."""
        if job != self.job and self._on_progress is not None:
            self._on_progress(job)
        self.job = job
        return job

    def seen(self, job: Job) -> Job:
        changed = (job.status, job.done, job.total) != (self.job.status, self.job.done, self.job.total)
        self.job = job
        if changed and self._on_progress is not None:
            self._on_progress(job)
        return job


class Client:
    """The filterviz API at `base_url` (e.g. http://localhost:8000), with an optional bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 5,
        backoff_seconds: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # Sent with requests to base_url's origin only, never to a link that points elsewhere.
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        retry = BoundedRetry(
            total=retries,
            connect=retries,
            read=False,  # re-raise read errors at once (see above)
            status=retries,
            other=0,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=frozenset({"GET", "POST", "DELETE"}),
            respect_retry_after_header=True,
            backoff_factor=backoff_seconds,
            backoff_max=30,
            raise_on_status=False,  # the last 429/503 comes back as an answer, turned into ApiError below
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Event streams: a refused one (503, the API's streams are all taken) is answered by polling at
        # once, not after the retries' waits.
        self._unretried = requests.Session()
        connect_only = HTTPAdapter(max_retries=Retry(total=retries, connect=retries, read=False, status=0, other=0))
        self._unretried.mount("http://", connect_only)
        self._unretried.mount("https://", connect_only)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
        self._unretried.close()

    def submit(self, request: dict[str, Any] | None = None) -> Job:
        """POST /v1/jobs: queue a job (every field optional, see the README); returns it as queued."""
        return Job.from_resource(self._json("POST", "/v1/jobs", 202, json=request or {}))

    def upload(
        self, path: Path, architecture: str | None = None, name: str | None = None, preprocessing: str | None = None
    ) -> dict[str, Any]:
        """POST /v1/models: upload weights for an architecture, or a whole Keras model (no architecture); the
        record, whose `id` a job names as its `weights` or its `model`."""
        given = {"architecture": architecture, "name": name, "preprocessing": preprocessing}
        form = {key: value for key, value in given.items() if value}
        with path.open("rb") as file:
            return self._json("POST", "/v1/models", 201, data=form, files={"file": (path.name, file)})

    def start_atlas(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/atlas: start an atlas, or resume the one with the same parameters; its resource."""
        return self._json("POST", "/v1/atlas", 202, json=request)

    def get_atlas(self, atlas_id: str) -> dict[str, Any]:
        """GET /v1/atlas/{id}: its status and progress, in all and by layer."""
        return self._json("GET", f"/v1/atlas/{atlas_id}", 200)

    def get(self, job_id: str) -> Job:
        """GET /v1/jobs/{id}."""
        return Job.from_resource(self._json("GET", f"/v1/jobs/{job_id}", 200))

    def list(self, limit: int = 20) -> list[Job]:
        """GET /v1/jobs: the most recent jobs, newest first."""
        listed = self._json("GET", "/v1/jobs", 200, params={"limit": limit})
        return [Job.from_resource(resource) for resource in listed["jobs"]]

    def cancel(self, job_id: str) -> Job:
        """POST /v1/jobs/{id}/cancel: cancel a queued or running job (ApiError 409 if it already ended;
        DELETE would delete a finished job's results instead)."""
        return Job.from_resource(self._json("POST", f"/v1/jobs/{job_id}/cancel", 200, json={}))

    def follow(self, job_id: str, last_event_id: str | None = None, until: float | None = None) -> Iterator[Event]:
        """GET /v1/jobs/{id}/events: the job's events as they come (`status`, `progress`, `filters`, `frame`,
        and `end` last), after `last_event_id` if given; ends early at the monotonic time `until`.

        ApiError when the stream can't be opened (503: the API holds as many streams as it may).
        """
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        response = self._call("GET", f"/v1/jobs/{job_id}/events", 200, stream=True, headers=headers, retried=False)
        with closing(response):
            for event in SSEClient(_chunks_until(response, until)).events():
                yield Event(event.id, event.event, json.loads(event.data))
                if event.event == END:
                    return

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll_seconds: float = 0.5,
        on_progress: Callable[[Job], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Job:
        """Follow the job's event stream until it ends; where the stream can't be opened, poll every
        `poll_seconds`. `on_progress(job)` is called whenever its status or progress changes, and
        `on_event` hears every event of the stream (live frames included).

        Raises WaitTimeout after `timeout` seconds (None: wait for good); the job goes on running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = _Watch(self.get(job_id), on_progress)
        last_id: str | None = None
        while not watch.job.finished:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(watch.job, timeout or 0.0)
            try:
                for event in self.follow(job_id, last_id, deadline):
                    last_id = event.id or last_id
                    watch.heard(event)
                    if on_event is not None:
                        on_event(event)
            except ApiError:  # no stream to be had: poll instead
                return self._poll(job_id, deadline, timeout, poll_seconds, watch)
            except requests.RequestException:  # the stream broke off: open it again after the last event
                time.sleep(poll_seconds)
        return watch.ended(self.get(job_id))

    def _poll(
        self, job_id: str, deadline: float | None, timeout: float | None, poll_seconds: float, watch: "_Watch"
    ) -> Job:
        while True:
            job = watch.seen(self.get(job_id))
            if job.finished:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout or 0.0)
            pause = poll_seconds if deadline is None else min(poll_seconds, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)

    def download(self, job_id: str, folder: Path) -> dict[str, Any]:
        """Write a succeeded job's grid.png, filters/<k>.png and manifest.json into `folder`
        (the layout of `filterviz render`); returns the manifest."""
        links = self.get(job_id).resource["links"]
        manifest = self._json("GET", links["manifest"], 200)
        # An index names a file here: anything but a whole number could name one outside the folder.
        indexes = [entry["index"] for entry in manifest["filters"]]
        if not all(type(index) is int and index >= 0 for index in indexes):
            raise ApiError(None, "bad_manifest", f"the manifest of job {job_id} has a filter index that isn't one")
        (folder / "filters").mkdir(parents=True, exist_ok=True)
        (folder / "grid.png").write_bytes(self._bytes(links["grid"]))
        for index in indexes:
            (folder / "filters" / f"{index}.png").write_bytes(self._bytes(links["filter"].format(index=index)))
        (folder / "manifest.json").write_bytes(self._bytes(links["manifest"]))
        return manifest

    def _bytes(self, path: str) -> bytes:
        return self._call("GET", path, 200).content

    def _json(self, method: str, path: str, expected: int, **kwargs: Any) -> Any:
        return self._call(method, path, expected, **kwargs).json()

    def _call(
        self, method: str, path: str, expected: int, headers: dict[str, str] | None = None, retried: bool = True,
        **kwargs: Any,
    ) -> requests.Response:  # fmt: skip
        """One request, retried by the adapter (unless not `retried`: then only its connection);
        ApiError unless the status is `expected`."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        sent = {**(self._auth if _origin(url) == _origin(self.base_url) else {}), **(headers or {})}
        session = self.session if retried else self._unretried
        try:
            response = session.request(method, url, timeout=self.timeout, headers=sent, **kwargs)
        except requests.ConnectionError as error:
            raise ApiError(None, "unreachable", f"{self.base_url} could not be reached: {error}") from None
        except requests.Timeout as error:
            raise ApiError(None, "timeout", f"{method} {url} got no answer in time: {error}") from None
        if response.status_code != expected:
            raise _api_error(response)
        return response


def _chunks_until(response: requests.Response, until: float | None) -> Iterator[bytes]:
    """The response's bytes as they come, up to the monotonic time `until` (checked at each piece: the
    server sends a keepalive every few seconds)."""
    for chunk in response.iter_content(chunk_size=None):
        yield chunk
        if until is not None and time.monotonic() >= until:
            return


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what must match for a request to carry the token."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _api_error(response: requests.Response) -> ApiError:
    """The API's JSON error ({"error": {"code", "message"}}) as an ApiError; anything else by its status."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason
    return ApiError(response.status_code, code, message, response.headers.get("Retry-After"))
