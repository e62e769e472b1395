"""Errors as values with a status, a code and a message; turned into JSON responses in one place."""

from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, Response, jsonify
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

# How long a client should wait before trying again while Redis or S3 is unreachable.
UNAVAILABLE_RETRY_SECONDS = 5
# What a down (or full) Redis or S3 raises: the client can do nothing but try again later.
REDIS_DOWN = (
    redis.ConnectionError,
    redis.TimeoutError,
    # redis-py raises it at maxmemory; types-redis's stubs lack it
    redis.exceptions.OutOfMemoryError,  # type: ignore[attr-defined]
    OperationalError,
)
S3_DOWN = (BotoCoreError, ClientError)


class ApiError(Exception):
    """A client-facing error: HTTP status, stable code, message, the fields it concerns, and
    for 429 and 503 how many seconds to wait before trying again."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems or []
        self.retry_after = retry_after
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error document."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.problems:
            error["problems"] = self.problems
        return {"error": error}

    def response(self) -> tuple[Response, int, dict[str, str]]:
        """The HTTP response: the body, the status, its headers and Retry-After where there is one."""
        retry = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return jsonify(self.body()), self.status, {**self.headers, **retry}


def unavailable(what: str, why: str | None = None) -> ApiError:
    """A 503 saying which dependency is down, and why where known."""
    because = f" ({why})" if why else ""
    message = f"{what} is unavailable{because}; try again shortly"
    return ApiError(503, f"{what}_unavailable", message, retry_after=UNAVAILABLE_RETRY_SECONDS)


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON: ours, Werkzeug's (404, 405, 413, ...), a down Redis or S3 as a 503,
    and anything unexpected as a 500."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error.response()

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        body, status, headers = ApiError(error.code or 500, code, error.description or error.name).response()
        # Keep what the exception says in headers (e.g. Allow on a 405), not its HTML content type.
        kept = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        if status == 413:  # the body was not read: the connection can't carry another request
            kept["Connection"] = "close"
        return body, status, {**kept, **headers}

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        for kinds, what in ((REDIS_DOWN, "queue"), (S3_DOWN, "storage")):
            if isinstance(error, kinds):
                app.logger.warning("%s unavailable: %s: %s", what, type(error).__name__, error)
                return unavailable(what).response()
        app.logger.exception("unhandled error")
        return ApiError(500, "internal_error", "something went wrong on our side").response()
