"""Structured logs: with FILTERVIZ_LOG_FORMAT=json each line is one JSON object, carrying the job id
and chunk of the task that logged it (for Loki, Elasticsearch, CloudWatch: filter by job).

    {"time": "2026-11-26T07:40:01.123Z", "level": "INFO", "logger": "worker.tasks",
     "message": "...", "job_id": "3f0c...", "chunk": "2", "process": 4711}

The job and chunk come from context variables that the worker sets around each task
(worker/job_logs.py); the API's gunicorn logs through the same formatter (api/gunicorn_conf.py).
"""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

JOB_ID: ContextVar[str | None] = ContextVar("filterviz_job_id", default=None)
CHUNK: ContextVar[str | None] = ContextVar("filterviz_chunk", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the job and chunk in hand, and the
    exception's traceback where there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name, variable in (("job_id", JOB_ID), ("chunk", CHUNK)):
            value = variable.get()
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def format_as_json(*loggers: logging.Logger) -> None:
    """Give every handler of these loggers the JSON formatter."""
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


def gunicorn_json_config() -> dict[str, Any]:
    """gunicorn's logconfig_dict for JSON lines: its error log and its access log (one object a request)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "error_console": {**handler, "stream": "ext://sys.stderr"},
            "console": {**handler, "stream": "ext://sys.stdout"},
        },
        "root": {"level": "INFO", "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
