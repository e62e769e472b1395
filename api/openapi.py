"""The OpenAPI document: paths written here, the request schema generated from the job spec itself.

The job schema comes from the same pydantic model, with the deployment's limits, that validates
requests (shared/spec.py's limited_spec_model), so the document states every bound as enforced.
"""

from functools import cache
from typing import Any

from api.webhooks import request_schema
from shared.atlas import AtlasRequest
from shared.spec import Limits, limited_spec_model

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                    "schema": {"type": "integer", "minimum": 0}},
}  # fmt: skip


def _error_response(description: str, retry: bool = False) -> dict[str, Any]:
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return {**response, "headers": _RETRY_AFTER} if retry else response


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _job_response(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Job"})


def _png(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


# Every route that reads job records or storage answers 503 while Redis or S3 is down.
_UNAVAILABLE = {"503": _error_response("Redis or storage unavailable", retry=True)}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
# Links for stateful testing and for readers: what can be done with a job just submitted.
_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in [("GetJob", "getJob"), ("DeleteJob", "deleteJob"), ("ListFilters", "listFilters"),
                            ("GetGrid", "getGrid"), ("GetThumbnail", "getThumbnail"), ("GetManifest", "getManifest")]
}  # fmt: skip
_JOB_LINKS["GetFilter"] = {
    "operationId": "getFilter",
    "parameters": {"job_id": "$response.body#/id", "index": "$response.body#/params/filters/0"},
}


def _with_tokens(paths: dict[str, Any]) -> dict[str, Any]:
    """Every /v1 operation asks for a bearer token and may answer 401."""
    unauthorized = _error_response("No token, or not a valid one (WWW-Authenticate says which)")
    unauthorized["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return {
        path: {
            method: {**op, "security": [{"bearer": []}], "responses": {**op["responses"], "401": unauthorized}}
            if path.startswith("/v1/")
            else op
            for method, op in operations.items()
        }
        for path, operations in paths.items()
    }


@cache
def openapi_document(limits: Limits, tokens: bool = False) -> dict[str, Any]:
    """OpenAPI 3.1 for every route of the API, with `limits` stated in the job schema, and bearer
    tokens on every /v1 operation where `tokens` are configured."""
    spec_schema = limited_spec_model(limits).model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec_schema.pop("$defs", {})
    schemas["JobSpec"] = spec_schema
    schemas["JobRequest"] = request_schema(spec_schema)
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
                            "required": ["field", "reason"],
                        },
                    },
                },
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    schemas["Job"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "canceled"]},
            "progress": {
                "type": "object",
                "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}},
                "required": ["done", "total"],
            },
            "params": {"$ref": "#/components/schemas/JobSpec"},
            "weights": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
            "error": {"type": ["object", "null"]},
            "queue": {
                "description": "A queued job's place in fair dispatch: chunks sent before its next one, and "
                "an estimated start in seconds from recent chunks (null before any); null once it runs",
                "type": ["object", "null"],
                "properties": {
                    "chunks_ahead": {"type": "integer"},
                    "estimated_start_seconds": {"type": ["number", "null"]},
                },
            },
            "links": {"type": "object"},
        },
        "required": ["id", "status", "progress", "params", "created_at", "links"],
    }
    job_paths = {
        "/v1/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a visualization job",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
                },
                "responses": {
                    "202": {
                        **_job_response("Accepted; Location names the job"),
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                        "links": _JOB_LINKS,
                    },
                    "400": _error_response("Malformed JSON, or nested too deeply"),
                    "403": _error_response("A priority above 0 without an admin token (code priority_not_allowed)"),
                    "413": _error_response("Body too large"),
                    "415": _error_response("Not JSON"),
                    "422": _error_response(
                        "Invalid values, each named with its field; or over the compute budget (code over_budget), "
                        "saying by how much and what to shrink. Beyond the schema: filters must exist in the layer, "
                        "be distinct and at most maxItems of them (a range's stop - start too), and image_size at "
                        "least the layer's min_image_size (GET /v1/models)"
                    ),
                    "429": _error_response("Too many unfinished jobs, or submissions too fast", retry=True),
                    **_UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "Recent jobs, newest first",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}
                ],
                "responses": {
                    "200": _json(
                        "A list of jobs",
                        {
                            "type": "object",
                            "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
                            "required": ["jobs"],
                        },
                    ),
                    "422": _error_response("Invalid limit"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job: status, progress, parameters, timestamps, error, links",
                "parameters": [_JOB_ID],
                "responses": {"200": _job_response("The job"), "404": _error_response("Unknown job"), **_UNAVAILABLE},
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Cancel a queued or running job (200); delete a finished one, results and record (204)",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _job_response("Canceled (it was queued or running)"),
                    "204": {"description": "Deleted: the job was finished; its results and record are gone"},
                    "404": _error_response("Unknown job"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJobByPost",
                "summary": "Cancel a queued or running job (409 once finished); JSON only, e.g. {}",
                "parameters": [_JOB_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": _job_response("Canceled"),
                    "404": _error_response("Unknown job"),
                    "400": _error_response("Malformed JSON"),
                    "409": _error_response("Already finished"),
                    "413": _error_response("Body too large"),
                    "415": _error_response("Not JSON: a cross-site form can't cancel a job"),
                    "422": _error_response("The body is not a JSON object"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/grid.png": {
            "get": {
                "operationId": "getGrid",
                "summary": "The grid picture",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _png("The grid"),
                    "404": _error_response("Unknown job or not ready"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/thumbnail.png": {
            "get": {
                "operationId": "getThumbnail",
                "summary": "The grid shrunk to at most 256 px a side",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _png("The thumbnail"),
                    "404": _error_response("Unknown job or not ready"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/filters": {
            "get": {
                "operationId": "listFilters",
                "summary": "Filters whose pictures are stored so far, with index, final loss, dead and URL",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _json(
                        "The filters",
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "status": {"type": "string"},
                                "filters": {"type": "array", "items": {"type": "object"}},
                            },
                            "required": ["id", "status", "filters"],
                        },
                    ),
                    "404": _error_response("Unknown job"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/filters/{index}.png": {
            "get": {
                "operationId": "getFilter",
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
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/jobs/{job_id}/manifest.json": {
            "get": {
                "operationId": "getManifest",
                "summary": "The manifest of a finished job",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _json("The manifest", {"type": "object"}),
                    "404": _error_response("Unknown or not ready"),
                    **_UNAVAILABLE,
                },
            },
        },
    }
    meta_paths = {
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "Models and their conv layers with filter counts",
                "responses": {"200": _json("The models", {"type": "object", "required": ["models"]})},
            }
        },
        "/v1/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "Live worker processes, from their heartbeats (host names, pids and units for admins)",
                "responses": {
                    "200": _json("The workers", {"type": "object", "required": ["count", "workers"]}),
                    **_UNAVAILABLE,
                },
            }
        },
        "/v1/webhook-secret": {
            "get": {
                "operationId": "getWebhookSecret",
                "summary": "The secret this token's webhooks are signed with (Standard Webhooks)",
                "responses": {
                    "200": _json(
                        "The owner and its secret",
                        {
                            "type": "object",
                            "required": ["owner", "secret"],
                            "properties": {"owner": {"type": ["string", "null"]}, "secret": {"type": "string"}},
                        },
                    ),
                    "422": _error_response("Webhooks are off here (no FILTERVIZ_WEBHOOK_SECRET)"),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive",
                "responses": {
                    "200": _json(
                        "Alive, with the package version",
                        {
                            "type": "object",
                            "required": ["status", "version"],
                            "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
                        },
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Redis answers and S3 takes writes",
                "responses": {
                    "200": _json("Ready", {"type": "object", "required": ["status", "checks"]}),
                    "503": {**_json("Not ready: each check says why", {"type": "object"}), "headers": _RETRY_AFTER},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json("OpenAPI", {"type": "object"})},
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "summary": "A page listing the endpoints",
                "responses": {"200": _html("HTML")},
            }
        },
        "/": {
            "get": {
                "operationId": "page",
                "summary": "The web page: submit, watch and browse jobs",
                "responses": {"200": _html("HTML")},
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "operationId": "jobPage",
                "summary": "The web page, opened on one job (the page itself says whether the job exists)",
                "parameters": [{**_JOB_ID, "schema": {"type": "string"}}],
                "responses": {"200": _html("HTML"), "404": _error_response("No such page")},
            }
        },
    }
    paths = {**job_paths, **_atlas_paths(), **meta_paths}
    components: dict[str, Any] = {"schemas": schemas}
    if tokens:
        paths = _with_tokens(paths)
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    info = {"title": "filterviz", "version": "1"}
    return {"openapi": "3.1.0", "info": info, "paths": paths, "components": components}


_ATLAS_ID = {
    "name": "atlas_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_LAYER = {"name": "layer", "in": "path", "required": True, "schema": {"type": "string"}}
_UNIT = {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}}


def _atlas_paths() -> dict[str, Any]:
    """The atlas (shared/atlas.py): start or resume, follow, read layers and units."""
    atlas = _json("The atlas: status, progress in all and by layer", {"type": "object", "required": ["id", "status"]})
    return {
        "/v1/atlas": {
            "post": {
                "operationId": "startAtlas",
                "summary": "Start an atlas of every conv layer under one method, or resume the one asked for before",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": AtlasRequest.model_json_schema()}},
                },
                "responses": {
                    "202": atlas,
                    "400": _error_response("Malformed JSON"),
                    "403": _error_response("Tokens are on and this one is not an admin's"),
                    "415": _error_response("Not JSON"),
                    "422": _error_response("Invalid parameters, or a layer's single filter over the budget"),
                    **_UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listAtlases",
                "summary": "Every atlas with its status and progress",
                "responses": {"200": _json("The atlases", {"type": "object", "required": ["atlases"]}), **_UNAVAILABLE},
            },
        },
        "/v1/atlas/{atlas_id}": {
            "get": {
                "operationId": "getAtlas",
                "summary": "One atlas: status and progress, in all and by layer, with its jobs",
                "parameters": [_ATLAS_ID],
                "responses": {"200": atlas, "404": _error_response("No such atlas"), **_UNAVAILABLE},
            },
        },
        "/v1/atlas/{atlas_id}/layers/{layer}": {
            "get": {
                "operationId": "listAtlasUnits",
                "summary": "A layer's units rendered so far: index, final loss, dead, picture",
                "parameters": [_ATLAS_ID, _LAYER],
                "responses": {
                    "200": _json("The units", {"type": "object", "required": ["units"]}),
                    "404": _error_response("No such atlas or layer"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/atlas/{atlas_id}/layers/{layer}/units/{index}": {
            "get": {
                "operationId": "getAtlasUnit",
                "summary": "One unit: final loss, dead or alive, its picture's URL",
                "parameters": [_ATLAS_ID, _LAYER, _UNIT],
                "responses": {
                    "200": _json("The unit", {"type": "object"}),
                    "404": _error_response("No such atlas, layer, or unit not rendered yet"),
                    **_UNAVAILABLE,
                },
            },
        },
        "/v1/atlas/{atlas_id}/layers/{layer}/units/{index}.png": {
            "get": {
                "operationId": "getAtlasUnitPicture",
                "summary": "One unit's picture, optionally shrunk to fit size x size",
                "parameters": [
                    _ATLAS_ID,
                    _LAYER,
                    _UNIT,
                    {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16, "maximum": 1024}},
                ],
                "responses": {
                    "200": _png("The picture"),
                    "404": _error_response("No such atlas, layer, or unit not rendered yet"),
                    "422": _error_response("Invalid size"),
                    **_UNAVAILABLE,
                },
            },
        },
    }
