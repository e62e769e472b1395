"""Webhooks: a job calls a URL of its submitter's when it starts and when it ends (as Replicate's
`webhook` and `webhook_events_filter`), signed as the Standard Webhooks spec says.

- Asked for in the request: `webhook` (an http(s) URL) and `webhook_events_filter` (`start`,
  `completed`; both by default). Kept out of the job spec: it says where to tell, not what to render.
- Emitted by the lifecycle's transitions (shared/lifecycle.py calls `JobEvents.moved`): queued ->
  running is `start`, any end (succeeded, failed, canceled) is `completed`. Emitting only enqueues a
  delivery task on its own queue; a chunk never waits on someone else's server.
- Delivered by worker/webhook_tasks.py: signed, retried with exponential backoff and jitter.
- Guarded against SSRF: only http(s), and every address the host resolves to must be public, at
  submit and again at each delivery (a name may resolve elsewhere by then: DNS rebinding); the
  request goes to the address that was checked. FILTERVIZ_WEBHOOK_ALLOW_PRIVATE=1 lifts the address
  check (a receiver on the same network, the tests).
"""

import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.jobs import FINISHED, RUNNING, Job, JobStore

log = logging.getLogger(__name__)

Event = Literal["start", "completed"]
START: Event = "start"
COMPLETED: Event = "completed"
REQUEST_FIELDS = ("webhook", "webhook_events_filter")


class UnsafeWebhook(ValueError):
    """A webhook URL that must not be called: not http(s), unresolvable, or a non-public address."""


class WebhookRequest(BaseModel):
    """The webhook part of a job request. Validated with context {"allow_private": bool}."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    webhook: str = Field(max_length=2048)
    webhook_events_filter: list[Event] = Field(default_factory=lambda: [START, COMPLETED], min_length=1, max_length=2)

    @field_validator("webhook")
    @classmethod
    def _safe_destination(cls, url: str, info: ValidationInfo) -> str:
        allow_private = bool((info.context or {}).get("allow_private"))
        resolve_destination(url, allow_private)
        return url


def stored_form(hook: WebhookRequest) -> str:
    """The webhook as the job record keeps it (JSON: url and events)."""
    return json.dumps({"url": hook.webhook, "events": hook.webhook_events_filter})


def take_request_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Take the webhook fields out of a request body (what is left is the job spec)."""
    return {name: body.pop(name) for name in REQUEST_FIELDS if name in body}


@dataclass(frozen=True)
class Destination:
    """Where a webhook goes: the parsed URL and the checked addresses its host resolved to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query
    addresses: list[str]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def resolve_destination(url: str, allow_private: bool) -> Destination:
    """Parse and resolve a webhook URL; raise UnsafeWebhook unless it is http(s) and every address is public."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UnsafeWebhook(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhook("only http and https URLs can be called")
    if not parts.hostname:
        raise UnsafeWebhook("the URL names no host")
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UnsafeWebhook(f"host {parts.hostname!r} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in found))
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            # is_global is False for loopback, private, link-local (cloud metadata), shared and reserved ranges.
            if not ip.is_global or ip.is_multicast:
                raise UnsafeWebhook(
                    f"host {parts.hostname!r} resolves to {address}, which is not a public address "
                    "(FILTERVIZ_WEBHOOK_ALLOW_PRIVATE=1 allows private receivers)"
                )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, parts.hostname, port, target, addresses)


def event_of(status: str) -> Event | None:
    """The webhook event a move to `status` is: start, completed, or none."""
    if status == RUNNING:
        return START
    return COMPLETED if status in FINISHED else None


def event_body(job: Job, event: str, timestamp: str) -> str:
    """The JSON sent: Standard Webhooks' type, timestamp and data; data is a thin view of the job
    (GET its `self` link for the whole resource, with results and presigned URLs)."""
    base = f"/v1/jobs/{job.id}"
    data = {
        "id": job.id,
        "status": job.status,
        "progress": {"done": job.done, "total": job.total},
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
        "links": {"self": base, "grid": f"{base}/grid.png", "manifest": f"{base}/manifest.json"},
    }
    return json.dumps({"type": f"job.{event}", "timestamp": timestamp, "data": data}, separators=(",", ":"))


# send(url, body, message_id): enqueue one delivery (worker/webhook_tasks.py's task, via Celery).
Send = Callable[[str, str, str], None]


class JobEvents:
    """The lifecycle's Events: turns a job's status changes into webhook deliveries, enqueued only."""

    def __init__(self, jobs: JobStore, send: Send) -> None:
        self._jobs = jobs
        self._send = send

    def moved(self, job_id: str, status: str, code: str | None = None) -> None:
        """The job moved to `status` (once per move): enqueue its webhook when it asked for this event."""
        event = event_of(status)
        job = self._jobs.get(job_id) if event is not None else None
        if event is None or job is None or not job.webhook:
            return
        hook = json.loads(job.webhook)  # as stored_form wrote it (checked at submit; again at delivery)
        if event in hook["events"]:
            # One id per job and event: the receiver's key for dropping a duplicate delivery.
            stamp = job.finished_at if event == COMPLETED else job.started_at
            self._send(hook["url"], event_body(job, event, stamp or job.created_at), f"msg_{job_id}_{event}")

    def recovered(self, job_id: str, unit: str) -> None:
        """Not an event a webhook hears."""
