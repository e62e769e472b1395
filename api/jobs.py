"""Job endpoints: submit, look up, list, cancel, and fetch results by job id."""

import uuid
from contextlib import closing
from typing import Any, overload

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import from_json

from api.access import check_priority, current_caller, is_admin, listed_owner, may_see
from api.admission import client_identity
from api.cached import cached_filters
from api.contract import UNAVAILABLE, Reply, documented, error, png
from api.errors import ApiError, unavailable
from api.resources import job_resource, resource_from_manifest
from api.schemas import AnyObject, FilterList, Job, JobList
from api.services import Services, current_services
from api.uploads import check_uploads
from api.webhooks import admissible_webhook
from shared.cache import job_hits, picture_of
from shared.cost import filter_flops, over_budget, split_by_cost
from shared.jobs import FINISHED, SUCCEEDED
from shared.manifest import GRID_FILE, MANIFEST_FILE, THUMBNAIL_FILE
from shared.settings import Settings
from shared.spec import JobSpec, describe_problems, parse_spec
from shared.storage import job_key
from shared.thumbnails import png_thumbnail
from shared.webhooks import take_request_fields

jobs = Blueprint("jobs", __name__, url_prefix="/v1")

MAX_LISTED = 100
# Results are sent in pieces of this size as they come from storage: never whole in memory.
STREAM_CHUNK_BYTES = 64 * 1024
MIN_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE = 16, 1024


class JobPath(BaseModel):
    # Only canonical UUID4s name a job (_job_id).
    job_id: str = Field(json_schema_extra={"format": "uuid"})


class ListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=MAX_LISTED)


class ShrinkQuery(BaseModel):
    size: int | None = Field(None, ge=MIN_THUMBNAIL_SIDE, le=MAX_THUMBNAIL_SIDE, description="fit in size x size")


UNKNOWN_JOB = {404: error("Unknown job")}
NOT_READY = {404: error("Unknown job, or not ready")}
# What can be done with a job just submitted (schemathesis' stateful phase follows these too).
JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in [("GetJob", "getJob"), ("DeleteJob", "deleteJob"), ("ListFilters", "listFilters"),
                            ("GetGrid", "getGrid"), ("GetThumbnail", "getThumbnail"), ("GetManifest", "getManifest")]
} | {"GetFilter": {"operationId": "getFilter", "parameters": {
    "job_id": "$response.body#/id", "index": "$response.body#/params/filters/0"}}}  # fmt: skip


def _job_id(raw: str) -> str:
    """A job id as the API writes them (canonical UUID4), or 404: anything else can't name a job.

    Other spellings of a UUID are refused rather than rewritten, so one job has one id.
    """
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 4 or str(parsed) != raw:
        raise ApiError(404, "job_not_found", f"no job {raw[:100]!r}")
    return raw


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id}")


def _resource(job_id: str) -> dict[str, Any]:
    """The job's resource, or 404 when there is no such job or it is another token's (the same answer)."""
    services = current_services()
    job = services.jobs.get(job_id)
    if job is not None:
        if not may_see(job.owner):
            raise _not_found(job_id)
        slices = services.settings.fair_slice_seconds
        return job_resource(job, services.storage, services.jobs.redis, detailed=is_admin(), slice_seconds=slices)
    # The manifest names no owner: a job Redis forgot is shown only where every job may be seen.
    if listed_owner() is not None:
        raise _not_found(job_id)
    manifest = services.storage.get_json(job_key(job_id, MANIFEST_FILE))
    if manifest is None:
        raise _not_found(job_id)
    return resource_from_manifest(manifest, services.storage)


def _require_json() -> None:
    """415 unless the request says it is JSON (which a cross-site form can't send without a preflight)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send JSON, with Content-Type: application/json")


def request_body() -> dict[str, Any]:
    """The JSON object in the body. Parsed by pydantic's parser: its depth limit answers deeply nested
    input at once (Python's json would recurse until RecursionError)."""
    _require_json()
    try:
        body = from_json(request.get_data(cache=False))
    except ValueError as error:
        reason = f"not valid JSON: {error}"
        raise ApiError(400, "malformed_json", f"the body is {reason}", [{"field": "body", "reason": reason}]) from None
    if not isinstance(body, dict):
        raise ApiError(
            422, "invalid_job", "the body must be a JSON object", [{"field": "body", "reason": "not an object"}]
        )
    return body


def admissible_spec(body: dict[str, Any], settings: Settings, code: str = "invalid_job") -> JobSpec:
    """The validated spec, or 422 naming each bad field (error `code`), or saying how far over budget
    the job is."""
    try:
        spec = parse_spec(body, settings.limits)
    except ValidationError as error:
        problems = describe_problems(error)
        raise ApiError(422, code, f"{problems[0]['field']}: {problems[0]['reason']}", problems) from None
    reason = over_budget(spec, settings.budget)
    if reason is not None:
        raise ApiError(422, "over_budget", reason, [{"field": "body", "reason": reason}])
    return spec


@jobs.post("/jobs")
@documented("submitJob", "Submit a visualization job", body="JobRequest", replies={
    202: Reply("Accepted; Location names the job", Job, headers=("Location",), links=JOB_LINKS),
    400: error("Malformed JSON, or nested too deeply"),
    403: error("A priority above 0 without an admin token (code priority_not_allowed)"),
    413: error("Body too large"),
    415: error("Not JSON"),
    422: error("Invalid values, each named with its field; or over the compute budget (code over_budget), saying "
               "by how much and what to shrink. Beyond the schema: filters must exist in the layer, be distinct and "
               "at most maxItems of them (a range's stop - start too), and image_size at least the layer's "
               "min_image_size (GET /v1/models)"),
    429: error("Too many unfinished jobs, or submissions too fast", retry=True),
    **UNAVAILABLE,
})  # fmt: skip
def submit_job():
    """Validate the request, check storage and the client's share, record the job, and queue its chunks.

    Cheapest refusals first: a bad request costs no Redis or S3 call. (The rate limit, in front of
    this, costs one Redis call.)
    """
    services = current_services()
    body = request_body()
    asked_webhook = take_request_fields(body)
    spec = admissible_spec(body, services.settings)
    check_priority(spec.priority)
    check_uploads(spec)
    webhook = admissible_webhook(asked_webhook, services)
    storage_problem = services.storage_probe.problem()
    if storage_problem is not None:
        raise unavailable("storage", "it can't take writes now")
    caller = current_caller()
    job_id = create_job(services, spec, client_identity(), caller.name if caller else None, webhook)
    resource = _resource(job_id)
    return resource, 202, {"Location": resource["links"]["self"]}


def create_job(
    services: Services, spec: JobSpec, client: str, owner: str | None, webhook: str | None = None, admit: bool = True
) -> str:
    """Record an admissible job and queue its chunks (or finish it from the cache); its id.

    `admit`: count it against the client's and the service's bounds (an atlas's jobs are admitted
    as a whole instead: shared/atlas.py)."""
    cached = cached_filters(services, spec)
    job_id = str(uuid.uuid4())
    if admit:
        services.admission.admit(job_id, client)
    # Only the filters the cache misses become chunks (shared/cache.py).
    missing = [index for index in spec.filters if index not in cached.hits]
    chunks = split_by_cost(
        missing, filter_flops(spec), services.settings.budget.chunk_flops, services.settings.chunk_size
    )
    services.lifecycle.submit(job_id, spec, chunks, client=client, owner=owner, webhook=webhook,
                              hits=cached.hits, hits_weights=cached.weights)  # fmt: skip
    return job_id


@jobs.get("/jobs")
@documented("listJobs", "Recent jobs, newest first", query=ListQuery,
            replies={200: Reply("A list of jobs", JobList), 422: error("Invalid limit"), **UNAVAILABLE})  # fmt: skip
def list_jobs():
    """The most recent jobs, newest first (those Redis still holds): the caller's own, or all for admins."""
    limit = query_int("limit", 1, MAX_LISTED, default=ListQuery.model_fields["limit"].default)
    services = current_services()
    listed = [services.jobs.get(job_id) for job_id in services.jobs.recent(limit, owner=listed_owner())]
    detailed = is_admin()
    slices = services.settings.fair_slice_seconds
    return {
        "jobs": [job_resource(job, services.storage, services.jobs.redis, detailed, slices) for job in listed if job]
    }


@jobs.get("/jobs/<job_id>")
@documented("getJob", "A job: status, progress, parameters, timestamps, error, links", path=JobPath,
            replies={200: Reply("The job", Job), **UNKNOWN_JOB, **UNAVAILABLE})  # fmt: skip
def get_job(job_id: str):
    """The job resource."""
    return _resource(_job_id(job_id))


@jobs.post("/jobs/<job_id>/cancel")
@documented("cancelJobByPost", "Cancel a queued or running job (409 once finished); JSON only, e.g. {}",
            path=JobPath, body=AnyObject, replies={
    200: Reply("Canceled", Job),
    400: error("Malformed JSON"),
    **UNKNOWN_JOB,
    409: error("Already finished"),
    413: error("Body too large"),
    415: error("Not JSON: a cross-site form can't cancel a job"),
    422: error("The body is not a JSON object"),
    **UNAVAILABLE,
})  # fmt: skip
def cancel_job(job_id: str):
    """Cancel a queued or running job: chunks not yet started do nothing, running ones stop at the next batch.

    Takes only JSON, so that a cross-site HTML form can't cancel anyone's job.
    """
    if request.mimetype != "application/json" or request.content_length:
        request_body()  # 415 unless JSON; a body, if any, must be a JSON object
    services = current_services()
    resource = _resource(_job_id(job_id))
    if resource["status"] in FINISHED or not services.lifecycle.cancel(resource["id"]):
        current = _resource(resource["id"])
        raise ApiError(409, "job_finished", f"job {resource['id']} is already {current['status']}")
    return _resource(resource["id"])


@jobs.delete("/jobs/<job_id>")
@documented("deleteJob", "Cancel a queued or running job (200); delete a finished one, results and record (204)",
            path=JobPath, replies={
    200: Reply("Canceled (it was queued or running)", Job),
    204: Reply("Deleted: the job was finished; its results and record are gone"),
    **UNKNOWN_JOB,
    **UNAVAILABLE,
})  # fmt: skip
def delete_job(job_id: str):
    """Cancel an unfinished job (200, the job canceled); delete a finished one, results and record (204).

    A job canceled here can be deleted by a second DELETE. Pictures that a chunk still stopping
    writes after the deletion are left to the retention sweep (shared/retention.py).
    """
    services = current_services()
    resource = _resource(_job_id(job_id))
    if resource["status"] not in FINISHED and services.lifecycle.cancel(resource["id"]):
        return _resource(resource["id"])
    services.lifecycle.delete(resource["id"])
    return Response(status=204)


def _stored_file(resource: dict[str, Any], name: str, content_type: str, shrink_to: int | None = None) -> Response:
    what = f"{name} of job {resource['id']}"
    return stored_file(job_key(resource["id"], name), what, resource["status"], content_type, shrink_to)


def stored_file(key: str, what: str, status: str, content_type: str, shrink_to: int | None = None) -> Response:
    """The object under `key`, streamed from storage as the client reads it (a grid can be tens of MB;
    a filter's picture shrunk to fit shrink_to is read whole: at most max_image_size a side), or 404
    naming `what`."""
    stored = current_services().storage.open(key)
    if stored is None:
        raise ApiError(404, "not_ready", f"{what} is not there (status {status})")
    headers = {"Cache-Control": "private, max-age=3600"}
    if shrink_to is not None:
        with closing(stored.body):
            return Response(png_thumbnail(stored.body.read(), shrink_to), content_type=content_type, headers=headers)
    response = Response(stored.body.iter_chunks(STREAM_CHUNK_BYTES), content_type=content_type, headers=headers)
    response.content_length = stored.length
    # Closed however the response ends, even when the client goes away before the first piece.
    response.call_on_close(stored.body.close)
    return response


@overload
def query_int(name: str, low: int, high: int, default: int) -> int: ...
@overload
def query_int(name: str, low: int, high: int, default: None = None) -> int | None: ...
def query_int(name: str, low: int, high: int, default: int | None = None) -> int | None:
    """An optional whole-number query parameter within [low, high], or 422 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    value = request.args.get(name, type=int)
    if value is None or not low <= value <= high:
        reason = f"must be a whole number from {low} to {high}, not {raw!r}"
        raise ApiError(422, "invalid_query", f"{name}: {reason}", [{"field": name, "reason": reason}])
    return value


def _succeeded(job_id: str) -> dict[str, Any]:
    """The resource of a job whose grid and manifest may be served: a canceled or failed job's are not,
    even where a finish that lost the race to a cancel left them behind."""
    resource = _resource(_job_id(job_id))
    if resource["status"] != SUCCEEDED:
        raise ApiError(404, "not_ready", f"job {resource['id']} has no results (status {resource['status']})")
    return resource


@jobs.get(f"/jobs/<job_id>/{GRID_FILE}")
@documented("getGrid", "The grid picture", path=JobPath, replies={200: png("The grid"), **NOT_READY, **UNAVAILABLE})
def get_grid(job_id: str):
    """The stitched grid PNG."""
    return _stored_file(_succeeded(job_id), GRID_FILE, "image/png")


@jobs.get(f"/jobs/<job_id>/{THUMBNAIL_FILE}")
@documented("getThumbnail", "The grid shrunk to at most 256 px a side", path=JobPath,
            replies={200: png("The thumbnail"), **NOT_READY, **UNAVAILABLE})  # fmt: skip
def get_thumbnail(job_id: str):
    """The grid shrunk to at most 256 px a side, for lists."""
    return _stored_file(_succeeded(job_id), THUMBNAIL_FILE, "image/png")


@jobs.get(f"/jobs/<job_id>/{MANIFEST_FILE}")
@documented("getManifest", "The manifest of a finished job", path=JobPath,
            replies={200: Reply("The manifest", AnyObject), **NOT_READY, **UNAVAILABLE})  # fmt: skip
def get_manifest(job_id: str):
    """The manifest of a finished job."""
    return _stored_file(_succeeded(job_id), MANIFEST_FILE, "application/json")


@jobs.get("/jobs/<job_id>/filters")
@documented("listFilters", "Filters whose pictures are stored so far, with index, final loss, dead and URL",
            path=JobPath, replies={200: Reply("The filters", FilterList), **UNKNOWN_JOB, **UNAVAILABLE})  # fmt: skip
def list_filters(job_id: str):
    """The filters whose pictures are stored so far (a chunk's appear when it finishes), with their losses."""
    resource = visible_job(job_id)
    return {"id": resource["id"], "status": resource["status"], "filters": stored_filters(resource)}


def visible_job(raw_id: str) -> dict[str, Any]:
    """The resource of the job `raw_id` names, or 404 (no such job, or another token's)."""
    return _resource(_job_id(raw_id))


def stored_filters(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's filters whose pictures are stored so far, in index order: index, final loss, dead, URL."""
    storage = current_services().storage
    manifest = storage.get_json(job_key(resource["id"], MANIFEST_FILE)) if resource["status"] == SUCCEEDED else None
    if manifest is not None:
        entries = manifest["filters"]
    else:
        records = storage.chunk_records(resource["id"]).values()
        entries = [entry for record in records for entry in record["filters"]]
        entries += job_hits(storage, resource["id"]).values()
    return [with_url(resource, entry) for entry in sorted(entries, key=lambda e: e["index"])]


def with_url(resource: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A filter's index, loss and dead, with the URL of its picture."""
    url = resource["links"]["filter"].format(index=entry["index"])
    return {"index": entry["index"], "loss": entry["loss"], "dead": entry["dead"], "url": url}


@jobs.get("/jobs/<job_id>/filters/<int(signed=True):index>.png")
@documented("getFilter", "One filter's picture, optionally shrunk to fit size x size", path=JobPath,
            query=ShrinkQuery, replies={
    200: png("The picture"),
    404: error("Unknown job, filter or not ready"),
    422: error("Invalid size"),
    **UNAVAILABLE,
})  # fmt: skip
def get_filter(job_id: str, index: int):
    """One filter's picture; ?size=N shrinks it to fit N x N (for galleries)."""
    resource = _resource(_job_id(job_id))
    shrink_to = query_int("size", MIN_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE)
    if index not in resource["params"]["filters"]:
        raise ApiError(404, "filter_not_in_job", f"filter {index} is not part of job {resource['id']}")
    key = picture_of(resource["id"], index, job_hits(current_services().storage, resource["id"]))
    return stored_file(key, f"filter {index} of job {resource['id']}", resource["status"], "image/png", shrink_to)
