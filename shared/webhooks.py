"""Webhooks: a job calls a URL of its submitter's when it starts and when it ends (as Replicate's
`webhook` and `webhook_events_filter`), signed as the Standard Webhooks spec says.

- Asked for in the request: `webhook` (an http(s) URL) and `webhook_events_filter` (`start`,
  `completed`; both by default). Kept out of the job spec: it says where to tell, not what to render.
- Emitted by the lifecycle's transitions (shared/lifecycle.py calls `JobEvents.moved`): queued ->
  running is `start`, any end (succeeded, failed, canceled) is `completed`. Emitting only enqueues a
  delivery task on its own queue; a chunk never waits on someone else's server.
- Delivered by worker/webhook_tasks.py: signed with the owner's own secret (shared/webhook_signing.py),
  retried with exponential backoff and jitter.
- Guarded against SSRF: only http(s) on ports 80 and 443 (FILTERVIZ_WEBHOOK_PORTS), and every
  address the host resolves to (within DNS_TIMEOUT_SECONDS) must be public, IPv4 carried in IPv6
  included, at submit and again at each delivery (a name may resolve elsewhere by then: DNS
  rebinding); the request goes to the address that was checked. FILTERVIZ_WEBHOOK_ALLOW_PRIVATE=1
  lifts the address check (a receiver on the same network, the tests).
"""

import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.job_errors import public_error
from shared.jobs import FINISHED, RUNNING, Job, JobStore

log = logging.getLogger(__name__)

Event = Literal["start", "completed"]
START: Event = "start"
COMPLETED: Event = "completed"
REQUEST_FIELDS = ("webhook", "webhook_events_filter")


# Answered for every address or resolution problem alike: the API must not tell a client what an
# internal name resolves to (or that it resolves at all). The detail goes to the log.
NOT_PUBLIC = "the webhook's host must resolve to public addresses only"
# A lookup that takes longer is refused: a slow DNS server must not hold an API thread.
DNS_TIMEOUT_SECONDS = 2.0
# Networks never called, whatever ipaddress' is_global says (it lets some through, and its answers vary
# with Python's version): IANA's special-purpose IPv4 and IPv6 registries, with the deprecated
# site-local and IPv4-compatible ranges. IPv6 forms that carry an IPv4 address are unwrapped first.
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Lookups run here, so that the request thread can stop waiting for one.
_lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


class UnsafeWebhook(ValueError):
    """A webhook URL that must not be called: not http(s), a port not allowed, unresolvable, or a
    non-public address. The message is safe to show; `detail` is for the log."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True)
class WebhookPolicy:
    """Where webhooks may go: public addresses only (unless `allow_private`), on `ports` (None: any)."""

    allow_private: bool = False
    ports: frozenset[int] | None = frozenset({80, 443})

    @classmethod
    def of(cls, settings: Any) -> "WebhookPolicy":
        """The configured policy (FILTERVIZ_WEBHOOK_ALLOW_PRIVATE, FILTERVIZ_WEBHOOK_PORTS)."""
        return cls(settings.webhook_allow_private, settings.webhook_port_list)


class WebhookRequest(BaseModel):
    """The webhook part of a job request. Validated with context {"policy": WebhookPolicy}."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    webhook: str = Field(max_length=2048)
    webhook_events_filter: list[Event] = Field(default_factory=lambda: [START, COMPLETED], min_length=1, max_length=2)

    @field_validator("webhook")
    @classmethod
    def _safe_destination(cls, url: str, info: ValidationInfo) -> str:
        policy = (info.context or {}).get("policy") or WebhookPolicy()
        try:
            resolve_destination(url, policy)
        except UnsafeWebhook as error:
            log.info("webhook to %s refused: %s", redacted(url), error.detail)
            raise
        return url


def stored_form(hook: WebhookRequest) -> str:
    """The webhook as the job record keeps it (JSON: url and events)."""
    return json.dumps({"url": hook.webhook, "events": hook.webhook_events_filter})


def take_request_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Take the webhook fields out of a request body (what is left is the job spec)."""
    return {name: body.pop(name) for name in REQUEST_FIELDS if name in body}


def redacted(url: str) -> str:
    """The URL as logs show it: scheme, host and port; a path or query may hold a receiver's secret."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."
    except ValueError:
        return "<not a URL>"


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


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may call this address: globally reachable, in no denied network, and where
    an IPv6 address carries an IPv4 one (mapped, NAT64, 6to4), that one is public too."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if inner is not None:
            return is_public(inner)
    return ip.is_global and not ip.is_multicast and not any(ip in network for network in DENIED_NETWORKS)


def _lookup(host: str, port: int) -> list[str]:
    """The addresses host resolves to, within DNS_TIMEOUT_SECONDS."""
    try:
        found = _lookups.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        answers = found.result(timeout=DNS_TIMEOUT_SECONDS)
    except TimeoutError:
        raise UnsafeWebhook(NOT_PUBLIC, f"{host!r} did not resolve within {DNS_TIMEOUT_SECONDS:g} s") from None
    except (OSError, UnicodeError) as error:
        raise UnsafeWebhook(NOT_PUBLIC, f"{host!r} does not resolve: {error}") from None
    return list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in answers))


def resolve_destination(url: str, policy: WebhookPolicy) -> Destination:
    """Parse and resolve a webhook URL; UnsafeWebhook unless it is http(s), on an allowed port, and
    every address it resolves to is public (or the policy allows private ones)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UnsafeWebhook(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhook("only http and https URLs can be called")
    if not parts.hostname:
        raise UnsafeWebhook("the URL names no host")
    if policy.ports is not None and port not in policy.ports:
        allowed = ", ".join(str(p) for p in sorted(policy.ports))
        raise UnsafeWebhook(f"port {port} is not one webhooks may use here ({allowed}; FILTERVIZ_WEBHOOK_PORTS)")
    addresses = _lookup(parts.hostname, port)
    if not policy.allow_private:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                raise UnsafeWebhook(NOT_PUBLIC, f"{parts.hostname!r} resolves to {address}, which is not public")
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
        "error": asdict(public_error(job.error)) if job.error else None,
        "links": {"self": base, "grid": f"{base}/grid.png", "manifest": f"{base}/manifest.json"},
    }
    return json.dumps({"type": f"job.{event}", "timestamp": timestamp, "data": data}, separators=(",", ":"))


# send(url, body, message_id, owner): enqueue one delivery (worker/webhook_tasks.py's task, via Celery).
Send = Callable[[str, str, str, str | None], None]


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
            body = event_body(job, event, stamp or job.created_at)
            self._send(hook["url"], body, f"msg_{job_id}_{event}", job.owner)

    def recovered(self, job_id: str, unit: str) -> None:
        """Not an event a webhook hears."""
