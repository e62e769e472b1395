"""The Celery app both sides share: broker, serialization, reliability settings, task names, and
how a job's units are sent. Completion is tracked by shared/lifecycle.py, not by a chord: a chord's
callback never runs when one header task fails outside its own error handling, and its counting
of duplicates depends on the Celery version."""

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

from shared.deliveries import member
from shared.lifecycle import FINISH
from shared.settings import Settings

QUEUE = "filterviz.render"
RENDER_CHUNK = "filterviz.render_chunk"
FINISH_JOB = "filterviz.finish_job"
# Webhook deliveries have their own queue and light worker (worker/webhook_tasks.py): a slow
# receiver never holds a render slot, and a long chunk never holds a delivery.
WEBHOOK_QUEUE = "filterviz.webhooks"
DELIVER_WEBHOOK = "filterviz.deliver_webhook"


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the configured Redis, set up so that no chunk is lost or hoarded."""
    app = Celery("filterviz", broker=settings.redis_url)
    # Leases (shared/lifecycle.py) recover a dead worker's chunk within a minute; the broker's own
    # redelivery after visibility_timeout is only a late duplicate, which finds its chunk done.
    transport = {"visibility_timeout": max(settings.visibility_timeout, settings.chunk_time_limit + 60)}
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        # Results live in storage and the job record; nothing reads Celery's.
        task_ignore_result=True,
        # A chunk is acked when it ends, and requeued at once if its pool process dies: chunks are
        # idempotent, and the lifecycle counts their starts, so a chunk that kills its process ends.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        task_time_limit=settings.chunk_time_limit,
        task_soft_time_limit=max(1, settings.chunk_time_limit - 30),
        task_default_queue=QUEUE,
        # An exact name wins over the pattern.
        task_routes={DELIVER_WEBHOOK: {"queue": WEBHOOK_QUEUE}, "filterviz.*": {"queue": QUEUE}},
        # Each pool process loads VGG16 in worker_process_init, which takes longer than the 4 s default.
        worker_proc_alive_timeout=300,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # SIGTERM (warm shutdown) asks running chunks to give themselves back (worker/process.py).
        # On a cold shutdown (SIGQUIT) they get this long to do it, and reserved messages go back.
        worker_soft_shutdown_timeout=settings.stop_grace_seconds,
        worker_enable_soft_shutdown_on_idle=True,
    )
    return app


class CeleryDispatch:
    """Sends a job's units as Celery tasks (the lifecycle's Dispatch)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def chunk(self, job_id: str, index: int, filters: list[int]) -> None:
        """Queue one chunk of filters."""
        self._app.send_task(RENDER_CHUNK, args=(job_id, index, list(filters)))

    def finish(self, job_id: str) -> None:
        """Queue the finish step."""
        self._app.send_task(FINISH_JOB, args=(job_id,))

    def waiting(self) -> set[str]:
        """The units (`<job>:<unit>`) whose messages wait in the broker's queue, taken by no worker yet.
        Read from the Redis transport's list (our tasks are sent without a broker priority, so
        they are all in the queue's own list); the broker holds a few, one per worker process."""
        with self._app.connection_for_read() as connection:
            messages = connection.default_channel.client.lrange(QUEUE, 0, -1)
        return {member(*unit) for message in messages if (unit := _unit_of_message(message))}


def unit_of_task(task: str, args: Sequence[Any]) -> tuple[str, str] | None:
    """(job id, unit) that a task of ours works on, from its name and arguments; None for another task."""
    if task == RENDER_CHUNK:
        return args[0], str(args[1])
    return (args[0], FINISH) if task == FINISH_JOB else None


def _unit_of_message(message: bytes) -> tuple[str, str] | None:
    """(job id, unit) of a message as the Redis transport stores it, else None."""
    try:
        envelope = json.loads(message)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        return unit_of_task(envelope["headers"]["task"], args)
    except (ValueError, KeyError, IndexError, TypeError):  # not one of ours, or another encoding
        return None


def send_webhook(app: Celery) -> Callable[[str, str, str, str | None], None]:
    """A function that queues one webhook delivery: (url, body, message id, owner)."""
    return lambda url, body, message_id, owner: app.send_task(
        DELIVER_WEBHOOK, args=(url, body, message_id), kwargs={"owner": owner}
    )
