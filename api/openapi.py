"""The OpenAPI document: paths written here, the request schema generated from the job spec itself."""

from functools import cache
from typing import Any

from shared.spec import JobSpec


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _job_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }


def _png(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"image/png": {}}}


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


@cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for every route of the API."""
    spec_schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec_schema.pop("$defs", {})
    schemas["JobSpec"] = spec_schema
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                        },
                    },
                },
                "required": ["code", "message"],
            }
        },
    }
    schemas["Job"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "canceled"]},
            "progress": {"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}},
            "params": {"$ref": "#/components/schemas/JobSpec"},
            "weights": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
            "error": {"type": ["object", "null"]},
            "links": {"type": "object"},
        },
    }
    job_paths = {
        "/v1/jobs": {
            "post": {
                "summary": "Submit a visualization job",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}},
                "responses": {
                    "202": _job_response("Accepted; Location names the job"),
                    "400": _error_response("Malformed JSON"),
                    "413": _error_response("Body too large"),
                    "415": _error_response("Not JSON"),
                    "422": _error_response("Invalid values, each named with its field"),
                },
            },
            "get": {
                "summary": "Recent jobs, newest first",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}
                ],
                "responses": {"200": {"description": "A list of jobs"}, "422": _error_response("Invalid limit")},
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "A job: status, progress, parameters, timestamps, error, links",
                "parameters": [_JOB_ID],
                "responses": {"200": _job_response("The job"), "404": _error_response("Unknown job")},
            },
            "delete": {
                "summary": "Cancel a queued or running job",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _job_response("Canceled"),
                    "404": _error_response("Unknown job"),
                    "409": _error_response("Already finished"),
                },
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Cancel a queued or running job (same as DELETE)",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _job_response("Canceled"),
                    "404": _error_response("Unknown job"),
                    "409": _error_response("Already finished"),
                },
            },
        },
        "/v1/jobs/{job_id}/grid.png": {
            "get": {
                "summary": "The grid picture",
                "parameters": [_JOB_ID],
                "responses": {"200": _png("The grid"), "404": _error_response("Unknown job or not ready")},
            },
        },
        "/v1/jobs/{job_id}/thumbnail.png": {
            "get": {
                "summary": "The grid shrunk to at most 256 px a side",
                "parameters": [_JOB_ID],
                "responses": {"200": _png("The thumbnail"), "404": _error_response("Unknown job or not ready")},
            },
        },
        "/v1/jobs/{job_id}/filters": {
            "get": {
                "summary": "Filters whose pictures are stored so far, with index, final loss, dead and URL",
                "parameters": [_JOB_ID],
                "responses": {"200": {"description": "The filters"}, "404": _error_response("Unknown job")},
            },
        },
        "/v1/jobs/{job_id}/filters/{index}.png": {
            "get": {
                "summary": "One filter's picture, optionally shrunk to fit size x size",
                "parameters": [
                    _JOB_ID,
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16, "maximum": 1024}},
                ],
                "responses": {
                    "200": _png("The picture"),
                    "404": _error_response("Unknown job, filter or not ready"),
                    "422": _error_response("Invalid size"),
                },
            },
        },
        "/v1/jobs/{job_id}/manifest.json": {
            "get": {
                "summary": "The manifest of a finished job",
                "parameters": [_JOB_ID],
                "responses": {"200": {"description": "The manifest"}, "404": _error_response("Unknown or not ready")},
            },
        },
    }
    meta_paths = {
        "/v1/models": {
            "get": {
                "summary": "Models and their conv layers with filter counts",
                "responses": {"200": {"description": "The models"}},
            }
        },
        "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Redis and S3 reachable",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
        "/docs": {"get": {"summary": "A page listing the endpoints", "responses": {"200": {"description": "HTML"}}}},
        "/": {
            "get": {
                "summary": "The web page: submit, watch and browse jobs",
                "responses": {"200": {"description": "HTML"}},
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "The web page, opened on one job",
                "parameters": [_JOB_ID],
                "responses": {"200": {"description": "HTML"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "filterviz", "version": "1"},
        "paths": {**job_paths, **meta_paths},
        "components": {"schemas": schemas},
    }
