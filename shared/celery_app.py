"""The Celery app both sides share: broker, serialization, reliability settings, task names, and
how a job becomes a chord of chunk tasks."""

from collections.abc import Sequence

from celery import Celery, chord

from shared.settings import Settings

QUEUE = "filterviz.render"
RENDER_CHUNK = "filterviz.render_chunk"
FINISH_JOB = "filterviz.finish_job"


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the configured Redis, set up so that no chunk is lost or hoarded."""
    app = Celery("filterviz", broker=settings.redis_url, backend=settings.redis_url)
    transport = {"visibility_timeout": settings.visibility_timeout}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A chunk is acked when it ends, and requeued if its worker process dies: chunks are
        # idempotent (they overwrite their own outputs and set, not add, their progress).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_time_limit=settings.chunk_time_limit,
        task_soft_time_limit=max(1, settings.chunk_time_limit - 30),
        result_expires=settings.job_record_days * 86400,
        task_default_queue=QUEUE,
        task_routes={"filterviz.*": {"queue": QUEUE}},
        # Each pool process loads VGG16 in worker_process_init, which takes longer than the 4 s default.
        worker_proc_alive_timeout=300,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


def split_chunks(filters: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Consecutive chunks of at most chunk_size filters."""
    return [list(filters[i : i + chunk_size]) for i in range(0, len(filters), chunk_size)]


def enqueue_job(app: Celery, job_id: str, chunks: Sequence[Sequence[int]]) -> None:
    """One render task per chunk; the finish task stitches the grid once every chunk is in."""
    header = [app.signature(RENDER_CHUNK, args=(job_id, index, list(filters))) for index, filters in enumerate(chunks)]
    chord(header)(app.signature(FINISH_JOB, args=(job_id,)))
