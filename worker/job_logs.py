"""A worker's logs with the job and chunk in hand (shared/logs.py), as JSON when asked for.

Celery's task_prerun and task_postrun set and clear the context around each task, from its
arguments (job id first; a render chunk's index second), so nothing in the tasks has to pass them on.
"""

import logging
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from shared.celery_app import RENDER_CHUNK
from shared.logs import CHUNK, JOB_ID, format_as_json


def _enter_task(task: Any = None, args: tuple | None = None, **_: Any) -> None:
    """Before a task: its job (and chunk) become the context of every line it logs."""
    args = args or ()
    if task is None or task.name not in _JOB_TASKS or not args:
        return
    JOB_ID.set(str(args[0]))
    CHUNK.set(str(args[1]) if task.name == RENDER_CHUNK and len(args) > 1 else None)


def _leave_task(**_: Any) -> None:
    JOB_ID.set(None)
    CHUNK.set(None)


def _as_json(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        format_as_json(logger)


_JOB_TASKS: set[str] = set()


def install(log_format: str, job_tasks: set[str]) -> None:
    """Tag the logs of `job_tasks` (whose first argument is a job id) with their job and chunk; with
    log_format "json", give Celery's handlers the JSON formatter once it has set them up."""
    _JOB_TASKS.update(job_tasks)
    task_prerun.connect(_enter_task, weak=False)
    task_postrun.connect(_leave_task, weak=False)
    if log_format == "json":
        after_setup_logger.connect(_as_json, weak=False)
        after_setup_task_logger.connect(_as_json, weak=False)
