"""Any unit's picture on demand: rendered the first time someone asks for it, from the cache ever after.

A unit is one filter of one layer of a model under a method, at the atlas' defaults (shared/atlas.py:
64 px, seed 0). Its picture is the result cache's entry for that one-filter job: a hit is served at
once; a miss queues the job, under its own client in fair dispatch (ON_DEMAND), so that visitors
and submitted jobs share the workers, and answers 202 with where to look. Asking again while it
renders joins the job already queued (a Redis key per unit names it). Each visitor (token or address)
has a bound on the renders it has in flight, and a rate per minute (FILTERVIZ_UNIT_RATE_LIMIT).
"""

import time
from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel, Field

from api.admission import client_identity
from api.cached import cached_filters
from api.contract import UNAVAILABLE, Reply, documented, error, png
from api.errors import ApiError
from api.jobs import admissible_spec, create_job, stored_file
from api.schemas import AnyObject
from api.services import Services, current_services
from shared import atlas as atlases
from shared import cache, objectives
from shared.jobs import FINISHED, SUCCEEDED
from shared.keys import ON_DEMAND_JOB, ON_DEMAND_VISITOR
from shared.layers import is_unit
from shared.methods import METHODS, SEED
from shared.spec import JobSpec

units = Blueprint("units", __name__)
ON_DEMAND = "on-demand"
RETRY_SECONDS = 2
# A unit's key while its first visitor queues the job; another visitor waits for the job's id.
RESERVED = b"reserved"
RESERVE_SECONDS, RESERVE_TRIES, RESERVE_WAIT_SECONDS = 30, 50, 0.1
# A unit's picture changes only when the deployment's weights do: a day in any cache.
PICTURE_CACHE = "public, max-age=86400"


class UnitPath(BaseModel):
    model: str = Field(description="a model of GET /v1/models")
    layer: str = Field(description="one of its layers")
    unit: int = Field(ge=0, description="the filter's index in the layer")


class UnitQuery(BaseModel):
    method: str = Field(SEED, description="how the picture is made (default seed)")
    size: int = Field(atlases.AtlasRequest.model_fields["image_size"].default, description="its side in px")
    objective: str = Field(
        "channel",
        description="what the picture maximises: one term, kind[:name=value,...] "
        "(e.g. neuron:x=0.25,y=0.5) or JSON; seed takes the channel only",
    )


def unit_spec(model: str, layer: str, unit: int) -> JobSpec:
    """The one-filter job that renders the unit (404 for a path naming nothing, 422 for a bad query)."""
    if not is_unit(model, layer, unit):
        raise ApiError(404, "unit_not_found", f"no unit {unit} of {layer[:64]!r} in {model[:64]!r}: GET /v1/models")
    method = request.args.get("method", SEED)
    if method not in METHODS:
        raise ApiError(422, "invalid_unit", f"method: one of {', '.join(METHODS)}",
                       [{"field": "method", "reason": f"one of {', '.join(METHODS)}"}])  # fmt: skip
    body: dict[str, Any] = atlases.job_request(atlases.AtlasRequest(model=model, method=method), layer, [unit])
    if "size" in request.args:
        body["image_size"] = int(request.args["size"]) if request.args["size"].isdigit() else request.args["size"]
    if "objective" in request.args:
        body["objective"] = _objective_term(request.args["objective"])
    return admissible_spec(body, current_services().settings, "invalid_unit")


def _objective_term(text: str) -> dict[str, Any]:
    try:
        return objectives.parse_term(text)
    except ValueError as error:
        raise ApiError(422, "invalid_unit", f"objective: {error}",
                       [{"field": "objective", "reason": str(error)}]) from None  # fmt: skip


@units.get("/v1/units/<model>/<layer>/<int:unit>.png")
@documented("getUnitPicture", "A unit's picture: at once when rendered, else rendered now", path=UnitPath,
            query=UnitQuery, replies={
    200: png("The picture"),
    202: Reply("Rendering: poll Location (the job) or ask again after Retry-After", AnyObject,
               headers=("Location", "Retry-After")),
    404: error("No such model, layer or unit"),
    422: error("Invalid method, size or objective"),
    429: error("Too many renders in flight, or asked too fast, from this visitor", retry=True),
    **UNAVAILABLE,
})  # fmt: skip
def unit_picture(model: str, layer: str, unit: int):
    """The unit's picture from the cache, or 202 while it renders (queued now, or joined)."""
    services = current_services()
    spec = unit_spec(model, layer, unit)
    hit = cached_filters(services, spec).hits.get(unit)
    if hit is not None:
        response = stored_file(cache.picture_key(hit["cache"]), f"unit {unit} of {layer}", SUCCEEDED, "image/png")
        response.headers["Cache-Control"] = PICTURE_CACHE
        return response
    job_id = _rendering(services, spec)
    body = {"status": "rendering", "job": job_id, "links": {"job": f"/v1/jobs/{job_id}", "self": request.path}}
    return body, 202, {"Location": f"/v1/jobs/{job_id}", "Retry-After": str(RETRY_SECONDS)}


@units.get("/v1/units/<model>/<layer>/<int:unit>")
@documented("getUnit", "A unit: loss, dead or alive, method, weights and the job that made it", path=UnitPath,
            query=UnitQuery, replies={
    200: Reply("The unit, rendered", AnyObject),
    404: error("No such model, layer or unit, or not rendered yet (its .png renders it)"),
    422: error("Invalid method, size or objective"),
    **UNAVAILABLE,
})  # fmt: skip
def unit_record(model: str, layer: str, unit: int):
    """What the cache knows of the unit; 404 until it is rendered."""
    services = current_services()
    spec = unit_spec(model, layer, unit)
    found = cached_filters(services, spec)
    hit = found.hits.get(unit)
    if hit is None:
        raise ApiError(404, "unit_not_rendered", f"unit {unit} of {layer} is not rendered yet: GET its .png renders it")
    made_by = services.jobs.redis.get(_job_key(spec))
    return {"model": model, "layer": layer, "unit": unit, "method": spec.method, "image_size": spec.image_size,
            "loss": hit["loss"], "dead": hit["dead"], "weights": found.weights,
            "job": made_by.decode() if made_by else None,
            "links": {"picture": f"{request.path}.png"}}  # fmt: skip


def _job_key(spec: JobSpec) -> str:
    """The Redis key naming the job that renders the unit (whatever the weights: the deployment's)."""
    return f"{ON_DEMAND_JOB}{cache.entry_hash(spec, '', spec.filters[0])}"


def _rendering(services: Services, spec: JobSpec) -> str:
    """The job rendering the unit: the one already queued for it, or a new one (429 past the visitor's
    bound). The first to reserve the unit's key queues the job; one asking at the same moment waits
    for its id."""
    redis, key = services.jobs.redis, _job_key(spec)
    for _ in range(RESERVE_TRIES):
        named = redis.get(key)
        if named is None:
            if redis.set(key, RESERVED, nx=True, ex=RESERVE_SECONDS):
                return _queue(services, spec, key)
        elif named != RESERVED:
            job = services.jobs.get(named.decode())
            if job is not None and job.status not in FINISHED:
                return job.id
            # Ended, and its picture not in the cache (failed, canceled, or the entry lapsed): again.
            redis.delete(key)
            continue
        time.sleep(RESERVE_WAIT_SECONDS)
    raise ApiError(503, "unavailable", "the unit's render could not be queued: try again", retry_after=RETRY_SECONDS)


def _queue(services: Services, spec: JobSpec, key: str) -> str:
    """Queue the unit's job, within the visitor's bound (the key's reservation is dropped past it)."""
    redis, visitor = services.jobs.redis, client_identity()
    started = f"{ON_DEMAND_VISITOR}{visitor}"
    mine = [job_id.decode() for job_id in redis.smembers(started)]
    rendering = [job_id for job_id in mine if (job := services.jobs.get(job_id)) and job.status not in FINISHED]
    if len(rendering) >= services.settings.unit_renders_per_visitor:
        redis.delete(key)
        raise ApiError(429, "too_many_renders", f"{len(rendering)} units are rendering for {visitor}: wait for one",
                       retry_after=RETRY_SECONDS)  # fmt: skip
    try:
        job_id = create_job(services, spec, ON_DEMAND, None, admit=False)
    except BaseException:
        redis.delete(key)
        raise
    with redis.pipeline() as pipe:
        pipe.set(key, job_id, ex=services.settings.job_record_days * 86400)
        pipe.delete(started)
        pipe.sadd(started, job_id, *rendering)
        pipe.expire(started, 86400)
        pipe.execute()
    return job_id
