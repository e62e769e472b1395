"""Atlas endpoints (shared/atlas.py): start or resume an atlas, follow it, read its layers and units.

Reading is open to every caller (an atlas is not private: its pictures are those of the shared
weights); starting one takes an admin token where tokens are on, since it occupies the workers for
hours. Its jobs are admitted as a whole: each within the per-job budget by its plan, queued under
one client of the fair dispatcher, outside the per-client bound on unfinished jobs.
"""

import re
import threading
from typing import Any

from cachetools import LRUCache
from flask import Blueprint
from pydantic import BaseModel, Field, ValidationError

from api.access import current_caller
from api.contract import UNAVAILABLE, Reply, documented, error, png
from api.errors import ApiError, unavailable
from api.jobs import (
    MAX_THUMBNAIL_SIDE,
    MIN_THUMBNAIL_SIDE,
    ShrinkQuery,
    create_job,
    query_int,
    request_body,
    stored_file,
)
from api.schemas import AnyObject, Atlas, AtlasList, AtlasUnits
from api.services import Services, current_services
from api.uploads import check_uploads
from shared import atlas as atlases
from shared.cost import over_budget
from shared.jobs import SUCCEEDED
from shared.layers import find_layer
from shared.manifest import MANIFEST_FILE
from shared.models import DEFAULT_MODEL
from shared.spec import describe_problems
from shared.storage import job_key

atlas = Blueprint("atlas", __name__, url_prefix="/v1")
_ID = re.compile(r"[0-9a-f]{32}")
# The units of succeeded jobs never change: kept here, so a layer's hundreds of thumbnails don't
# each read its manifest.
_finished_units: LRUCache[str, dict[int, dict[str, Any]]] = LRUCache(maxsize=256)
_finished_lock = threading.Lock()


class AtlasPath(BaseModel):
    atlas_id: str = Field(pattern=f"^{_ID.pattern}$")


NO_UNIT = {404: error("No such atlas, layer, or unit not rendered yet")}


def _problem(status: int, code: str, field: str, reason: str) -> ApiError:
    return ApiError(status, code, f"{field}: {reason}", [{"field": field, "reason": reason}])


def _record(atlas_id: str) -> dict[str, Any]:
    record = current_services().storage.get_json(atlases.record_key(atlas_id)) if _ID.fullmatch(atlas_id) else None
    if record is None:
        raise ApiError(404, "atlas_not_found", f"no atlas {atlas_id[:100]!r}")
    return record


def _state(services: Services, job_id: str) -> tuple[str, int, int]:
    """A job's status, filters done and total; a job Redis forgot is succeeded when its manifest is there."""
    job = services.jobs.get(job_id)
    if job is not None:
        return job.status, job.done, job.total
    manifest = services.storage.get_json(job_key(job_id, MANIFEST_FILE))
    if manifest is None:
        return atlases.FORGOTTEN, 0, 0
    return SUCCEEDED, len(manifest["filters"]), len(manifest["filters"])


def atlas_resource(record: dict[str, Any]) -> dict[str, Any]:
    """The atlas as JSON: parameters, status and progress, in all and by layer."""
    services = current_services()
    states = {job_id: _state(services, job_id) for layer in record["layers"] for job_id in layer["jobs"]}
    layers = []
    for layer in record["layers"]:
        own = [states[job_id] for job_id in layer["jobs"]]
        summed = atlases.summary([s for s, _, _ in own], sum(d for _, d, _ in own), sum(t for _, _, t in own))
        links = {"units": f"/v1/atlas/{record['id']}/layers/{layer['layer']}", "page": _page(record, layer["layer"])}
        layers.append({"layer": layer["layer"], **summed, "jobs": layer["jobs"], "links": links})
    summed = atlases.summary([s for s, _, _ in states.values()], sum(d for _, d, _ in states.values()),
                             sum(t for _, _, t in states.values()))  # fmt: skip
    weights = next((job.weights for job_id in states if (job := services.jobs.get(job_id)) and job.weights), None)
    return {"id": record["id"], **summed, "params": record["params"], "weights": weights,
            "created_at": record["created_at"], "layers": layers,
            "links": {"self": f"/v1/atlas/{record['id']}", "page": _page(record)}}  # fmt: skip


def _page(record: dict[str, Any], *path: str) -> str:
    return "/".join(["/atlas", record["params"]["model"], *path])


@atlas.post("/atlas")
@documented("startAtlas", "Start an atlas of every conv layer under one method, or resume the one asked for before",
            body=atlases.AtlasRequest, replies={
    202: Reply("The atlas: status, progress in all and by layer", Atlas, headers=("Location",)),
    400: error("Malformed JSON"),
    403: error("Tokens are on and this one is not an admin's"),
    415: error("Not JSON"),
    422: error("Invalid parameters, or a layer's single filter over the budget"),
    **UNAVAILABLE,
})  # fmt: skip
def start_atlas():
    """Start an atlas, or resume the one with the same parameters (its failed, canceled or forgotten jobs
    are submitted anew, and take what was rendered from the cache); 202 either way."""
    caller = current_caller()
    if caller is not None and not caller.admin:  # before the body is read: a user token learns nothing of it
        raise ApiError(403, "admin_only", "an atlas occupies the workers for hours: only an admin token may start one")
    services = current_services()
    body = request_body()
    try:
        asked = atlases.AtlasRequest.model_validate(body)
        planned = atlases.plan(asked, services.settings.limits, services.settings.budget)
    except ValidationError as error:
        problems = describe_problems(error)
        raise ApiError(422, "invalid_atlas", f"{problems[0]['field']}: {problems[0]['reason']}", problems) from None
    except ValueError as error:
        raise _problem(422, "invalid_atlas", "layers", str(error)) from None
    # A layer's jobs hold as many filters as fit the budget; a single filter over it can't be planned.
    for spec in (spec for _, specs in planned for spec in specs):
        reason = over_budget(spec, services.settings.budget)
        if reason is not None:
            raise _problem(422, "over_budget", "body", f"{spec.layer}: {reason}")
    if services.storage_probe.problem() is not None:
        raise unavailable("storage", "it can't take writes now")
    check_uploads(planned[0][1][0])
    atlas_id = atlases.atlas_id(asked)
    specs = dict(planned)

    def submit(layer: str, position: int) -> str:
        return create_job(services, specs[layer][position], atlases.ATLAS_CLIENT, None, admit=False)

    record = services.storage.get_json(atlases.record_key(atlas_id))
    if record is None:
        jobs = [(layer, [submit(layer, i) for i in range(len(own))]) for layer, own in planned]
        record = atlases.new_record(atlas_id, asked, jobs)
    else:
        atlases.resume(record, lambda job_id: _state(services, job_id)[0], submit)
    services.storage.put_json(atlases.record_key(atlas_id), record)
    resource = atlas_resource(record)
    return resource, 202, {"Location": resource["links"]["self"]}


@atlas.get("/atlas")
@documented(
    "listAtlases",
    "Every atlas with its status and progress",
    replies={200: Reply("The atlases", AtlasList), **UNAVAILABLE},
)
def list_atlases():
    """Every atlas, with its status and progress."""
    storage = current_services().storage
    records = [storage.get_json(key) for key in storage.list_keys(atlases.ATLAS_PREFIX)]
    return {"atlases": [atlas_resource(record) for record in records if record is not None]}


@atlas.get("/atlas/<atlas_id>")
@documented("getAtlas", "One atlas: status and progress, in all and by layer, with its jobs", path=AtlasPath,
            replies={200: Reply("The atlas", Atlas), 404: error("No such atlas"), **UNAVAILABLE})  # fmt: skip
def get_atlas(atlas_id: str):
    """The atlas resource."""
    return atlas_resource(_record(atlas_id))


def _units(record: dict[str, Any], layer: str) -> dict[int, dict[str, Any]]:
    """The layer's units rendered so far, by index (each with `picture`, its bucket key)."""
    services = current_services()
    own = next((entry for entry in record["layers"] if entry["layer"] == layer), None)
    if own is None:
        raise ApiError(404, "layer_not_in_atlas", f"atlas {record['id']} has no layer {layer[:100]!r}")
    units: dict[int, dict[str, Any]] = {}
    for job_id in own["jobs"]:
        with _finished_lock:
            known = _finished_units.get(job_id)
        if known is None:
            job = services.jobs.get(job_id)
            known = atlases.unit_entries(services.storage, job, job_id)
            if job is None or job.status == SUCCEEDED:
                with _finished_lock:
                    _finished_units[job_id] = known
        units.update(known)
    return units


def _public(record: dict[str, Any], layer: str, unit: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/atlas/{record['id']}/layers/{layer}/units/{unit['index']}"
    return {"index": unit["index"], "loss": unit["loss"], "dead": unit["dead"], "revived": unit.get("revived"),
            "cached": "cache" in unit, "picture": f"{base}.png", "links": {"self": base,
            "page": _page(record, layer, str(unit["index"]))}}  # fmt: skip


@atlas.get("/atlas/<atlas_id>/layers/<layer>")
@documented(
    "listAtlasUnits",
    "A layer's units rendered so far: index, final loss, dead, picture",
    path=AtlasPath,
    replies={200: Reply("The units", AtlasUnits), 404: error("No such atlas or layer"), **UNAVAILABLE},
)
def list_units(atlas_id: str, layer: str):
    """The layer's units rendered so far: index, final loss, dead or alive, picture."""
    record = _record(atlas_id)
    units = _units(record, layer)
    known = find_layer(layer, record["params"].get("model", DEFAULT_MODEL))
    total = known.filters if known else 0
    return {"atlas": record["id"], "layer": layer, "filters": total,
            "units": [_public(record, layer, units[k]) for k in sorted(units)]}  # fmt: skip


def _unit(atlas_id: str, layer: str, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    record = _record(atlas_id)
    unit = _units(record, layer).get(index)
    if unit is None:
        raise ApiError(404, "unit_not_ready", f"unit {index} of {layer} is not rendered in atlas {record['id']}")
    return record, unit


@atlas.get("/atlas/<atlas_id>/layers/<layer>/units/<int:index>")
@documented("getAtlasUnit", "One unit: final loss, dead or alive, its picture's URL", path=AtlasPath,
            replies={200: Reply("The unit", AnyObject), **NO_UNIT, **UNAVAILABLE})  # fmt: skip
def get_unit(atlas_id: str, layer: str, index: int):
    """One unit: final loss, dead or alive, its picture."""
    record, unit = _unit(atlas_id, layer, index)
    return _public(record, layer, unit)


@atlas.get("/atlas/<atlas_id>/layers/<layer>/units/<int:index>.png")
@documented(
    "getAtlasUnitPicture",
    "One unit's picture, optionally shrunk to fit size x size",
    path=AtlasPath,
    query=ShrinkQuery,
    replies={200: png("The picture"), **NO_UNIT, 422: error("Invalid size"), **UNAVAILABLE},
)
def get_unit_picture(atlas_id: str, layer: str, index: int):
    """One unit's picture; ?size=N shrinks it to fit N x N (the layer's thumbnails)."""
    shrink_to = query_int("size", MIN_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE)
    _, unit = _unit(atlas_id, layer, index)
    return stored_file(unit["picture"], f"unit {index} of {layer}", SUCCEEDED, "image/png", shrink_to)
