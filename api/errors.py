"""Errors as values with a status, a code and a message; turned into JSON responses in one place."""

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """A client-facing error: HTTP status, stable code, message, and the fields it concerns."""

    def __init__(self, status: int, code: str, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems or []

    def body(self) -> dict[str, Any]:
        """The JSON error document."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.problems:
            error["problems"] = self.problems
        return {"error": error}


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON: ours, Werkzeug's (404, 405, 413, ...), and anything unexpected as a 500."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return jsonify(error.body()), error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify(ApiError(error.code or 500, code, error.description or error.name).body()), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify(ApiError(500, "internal_error", "something went wrong on our side").body()), 500
