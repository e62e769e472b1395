"""The webhook delivery task, consumed by its own light worker (no TensorFlow, a thread pool):

    celery -A worker.webhook_tasks worker -Q filterviz.webhooks --pool threads --concurrency 8

Each attempt resolves the receiver's host again, checks every address (shared/webhooks.py) and
posts to the checked address, signed for the job's owner with a fresh timestamp, all within
FILTERVIZ_WEBHOOK_TIMEOUT_SECONDS (worker/webhook_post.py: the answer's body is never read). A 2xx
is delivered; anything else (another status, a refused or cut connection) is tried again after an
exponentially growing, jittered wait, up to FILTERVIZ_WEBHOOK_MAX_ATTEMPTS attempts. Redirects are
not followed.

- One owner has at most FILTERVIZ_WEBHOOK_OWNER_CONCURRENCY deliveries under way (worker/webhook_slots.py);
  a delivery that finds them all taken waits a moment and comes back, without spending an attempt.
- Deliveries are acked when they start, not when they end, and never requeued when their worker is
  lost: a receiver that brings the worker down can't bring it down again and again.
- A worker without FILTERVIZ_WEBHOOK_SECRET signs nothing: it starts (compose and `make up` run
  one whether webhooks are configured or not; the API refuses webhooks then), and any delivery it
  takes goes back to wait NO_SECRET_SECONDS, unsigned and without spending an attempt, for a
  worker that has the secret.
- Logs name the receiver by scheme, host and port: a URL's path or query may hold its secret.
"""

import logging
import random
import time
from typing import Any

from celery import Task
from celery.signals import worker_ready
from celery.utils.time import get_exponential_backoff_interval

from shared.celery_app import DELIVER_WEBHOOK, create_celery
from shared.jobs import redis_client
from shared.settings import Settings
from shared.webhook_signing import owner_secret, signed_headers
from shared.webhooks import UnsafeWebhook, WebhookPolicy, redacted, resolve_destination
from worker import job_logs
from worker.webhook_post import DeliveryFailed, post
from worker.webhook_slots import OwnerSlots

log = logging.getLogger(__name__)
settings = Settings()
app = create_celery(settings)
job_logs.install(settings.log_format, set())
# A slot outlives the longest attempt; one whose worker died frees itself after that.
slots = OwnerSlots(redis_client(settings), settings.webhook_owner_concurrency, settings.webhook_timeout_seconds + 30)

MAX_BACKOFF_SECONDS = 3600
# A delivery whose owner has every slot taken comes back after about this long, doubled at each
# wait up to MAX_BUSY_SECONDS (jittered): a tenant with many deliveries queued doesn't spin the queue.
OWNER_BUSY_SECONDS, MAX_BUSY_SECONDS = 2.0, 30.0
# A delivery taken by a worker without a secret is put back for this long.
NO_SECRET_SECONDS = 60
NO_SECRET = "FILTERVIZ_WEBHOOK_SECRET is not set: this worker signs nothing"


@worker_ready.connect
def say_when_nothing_can_be_signed(**_: Any) -> None:
    """A worker without a secret says so once it is up (an empty key would sign everything alike)."""
    if not settings.webhook_secret:
        log.warning("%s; deliveries it takes wait for a worker that has it", NO_SECRET)


def backoff_seconds(retries: int) -> int:
    """Full jitter: a random wait up to retry_seconds * 2^retries, capped (AWS' backoff advice)."""
    return get_exponential_backoff_interval(
        settings.webhook_retry_seconds, retries, MAX_BACKOFF_SECONDS, full_jitter=True
    )


def attempt_once(url: str, body: str, message_id: str, owner: str | None) -> int | str:
    """One signed POST: the status code, or why there was none."""
    if not settings.webhook_secret:  # checked by the task first; never sign with an empty key
        raise RuntimeError(NO_SECRET)
    destination = resolve_destination(url, WebhookPolicy.of(settings))
    secret = owner_secret(settings.webhook_secret, owner)
    headers = signed_headers(secret, message_id, int(time.time()), body)
    try:
        return post(destination, body, headers, settings.webhook_timeout_seconds)
    except DeliveryFailed as failure:
        return str(failure)


@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None, acks_late=False, reject_on_worker_lost=False)
def deliver_webhook(
    self: Task, url: str, body: str, message_id: str, owner: str | None = None, attempt: int = 1, waits: int = 0
) -> dict[str, Any]:
    """One delivery attempt; schedules the next when this one fails and attempts are left."""
    if not settings.webhook_secret:
        log.error("webhook %s not sent: %s; it waits %d s for a worker that has it", message_id, NO_SECRET,
                  NO_SECRET_SECONDS)  # fmt: skip
        raise self.retry(countdown=NO_SECRET_SECONDS)
    slot = slots.take(owner)
    if slot is None:  # this owner's receivers hold their share of the threads: come back shortly
        wait = min(MAX_BUSY_SECONDS, OWNER_BUSY_SECONDS * 2**waits) * random.uniform(0.5, 1)
        raise self.retry(kwargs={**self.request.kwargs, "waits": waits + 1}, countdown=wait)
    try:
        status = attempt_once(url, body, message_id, owner)
    except UnsafeWebhook as error:  # the name now points somewhere private: never call it
        log.warning("webhook %s to %s refused: %s", message_id, redacted(url), error.detail)
        return {"id": message_id, "refused": str(error)}
    finally:
        slots.give_back(slot)
    if isinstance(status, int) and 200 <= status < 300:
        log.info("webhook %s delivered to %s (attempt %d)", message_id, redacted(url), attempt)
        return {"id": message_id, "status": status, "attempt": attempt}
    if attempt >= settings.webhook_max_attempts:
        log.warning(
            "webhook %s to %s given up after %d attempts (last: %s)", message_id, redacted(url), attempt, status
        )
        return {"id": message_id, "gave_up": status, "attempt": attempt}
    wait = backoff_seconds(attempt - 1)
    log.info(
        "webhook %s to %s got %s (attempt %d): trying again in %d s", message_id, redacted(url), status, attempt, wait
    )
    raise self.retry(kwargs={**self.request.kwargs, "attempt": attempt + 1}, countdown=wait)
