"""The webhook delivery task, consumed by its own light worker (no TensorFlow, a thread pool):

    celery -A worker.webhook_tasks worker -Q filterviz.webhooks --pool threads --concurrency 8

Each attempt resolves the receiver's host again, checks every address (shared/webhooks.py) and
posts to the checked address, signed with a fresh timestamp. A 2xx is delivered; anything else
(another status, a refused or timed-out connection) is tried again after an exponentially growing,
jittered wait, up to FILTERVIZ_WEBHOOK_MAX_ATTEMPTS attempts. Redirects are not followed.
"""

import logging
import time
from typing import Any

import certifi
import urllib3
from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from shared.celery_app import DELIVER_WEBHOOK, create_celery
from shared.settings import Settings
from shared.webhook_signing import signed_headers
from shared.webhooks import Destination, UnsafeWebhook, resolve_destination
from worker import job_logs

log = logging.getLogger(__name__)
settings = Settings()
app = create_celery(settings)
job_logs.install(settings.log_format, set())

MAX_BACKOFF_SECONDS = 3600


def post(destination: Destination, body: str, headers: dict[str, str], timeout: float) -> int:
    """POST to the destination's first checked address (never a fresh lookup); the status code."""
    address = destination.addresses[0]
    options: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout), "retries": False}
    pool: urllib3.HTTPConnectionPool
    if destination.scheme == "https":
        # Connect to the address, verify the certificate for the host name.
        pool = urllib3.HTTPSConnectionPool(
            address, destination.port, server_hostname=destination.host, assert_hostname=destination.host,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), **options,
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, destination.port, **options)
    with pool:
        response = pool.urlopen(
            "POST", destination.target, body=body.encode(), headers={**headers, "Host": destination.host_header},
            redirect=False, retries=False, preload_content=True,
        )  # fmt: skip
    return response.status


def backoff_seconds(retries: int) -> int:
    """Full jitter: a random wait up to retry_seconds * 2^retries, capped (AWS' backoff advice)."""
    return get_exponential_backoff_interval(
        settings.webhook_retry_seconds, retries, MAX_BACKOFF_SECONDS, full_jitter=True
    )


@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self: Task, url: str, body: str, message_id: str) -> dict[str, Any]:
    """One delivery attempt; schedules the next when this one fails and attempts are left."""
    attempt = self.request.retries + 1
    try:
        destination = resolve_destination(url, settings.webhook_allow_private)
    except UnsafeWebhook as error:  # the name now points somewhere private: never call it
        log.warning("webhook %s to %s refused: %s", message_id, url, error)
        return {"id": message_id, "refused": str(error)}
    headers = signed_headers(settings.webhook_secret or "", message_id, int(time.time()), body)
    try:
        status: int | str = post(destination, body, headers, settings.webhook_timeout_seconds)
    except urllib3.exceptions.HTTPError as error:
        status = type(error).__name__
    if isinstance(status, int) and 200 <= status < 300:
        log.info("webhook %s delivered to %s (attempt %d)", message_id, url, attempt)
        return {"id": message_id, "status": status, "attempt": attempt}
    if attempt >= settings.webhook_max_attempts:
        log.warning("webhook %s to %s given up after %d attempts (last: %s)", message_id, url, attempt, status)
        return {"id": message_id, "gave_up": status, "attempt": attempt}
    wait = backoff_seconds(self.request.retries)
    log.info("webhook %s to %s got %s (attempt %d): trying again in %d s", message_id, url, status, attempt, wait)
    raise self.retry(countdown=wait)
