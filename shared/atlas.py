"""The atlas: every filter of every conv layer of VGG16 under one method, as ordinary jobs.

An atlas request names a method and its parameters, image_size, steps, step_size and seed (fixed
by default, so that asking again finds the same pictures). It is planned as jobs of one layer
each, split further where a layer's filters would pass the per-job budget or filter limit
(`plan`), so each job is admitted by the same rules as any other. Its jobs go to the fair
dispatcher (shared/scheduling.py) under one client, ATLAS_CLIENT, shared by every atlas: an
atlas gets one client's share of the workers, and anyone else's small job goes before its next
chunk. They use the result cache (shared/cache.py) like any job.

Resumable: the atlas id is a hash of its parameters, and asking for the same atlas again
submits anew each of its jobs that failed, was canceled or was forgotten; the new job takes
every filter already rendered from the cache. Within a job, a chunk whose worker died runs again
(shared/lifecycle.py) and the chunks done stay done.

The record (atlas/<id>.json in the bucket) lists the jobs; their status and progress are read
from the job records, and their pictures from the jobs' manifests, chunk records and cache hits.
An atlas is not private: any caller may read it (the pictures are those of the shared weights).
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared import cache
from shared.cost import Budget, filter_flops
from shared.jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, now
from shared.layers import conv_layers, model_table, model_tables
from shared.manifest import MANIFEST_FILE
from shared.methods import SEED, AnyMethodParams, MethodName
from shared.models import DEFAULT_MODEL
from shared.spec import API_LAYERS, JobModel, JobSpec, Limits, parse_spec
from shared.storage import Storage, job_key

ATLAS_CLIENT = "atlas"
ATLAS_PREFIX = "atlas/"
ATLAS_GRID = {"n": 8, "margin": 5}
# A job whose record Redis no longer has, and that left no manifest.
FORGOTTEN = "forgotten"
# Jobs that will not finish: asking for the atlas again submits them anew.
STOPPED = (FAILED, CANCELED, FORGOTTEN)


class AtlasRequest(BaseModel):
    """What an atlas renders; every field optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # A built-in network, or a whole model someone uploaded (its id).
    model: JobModel = DEFAULT_MODEL
    # Uploaded weights for the model (POST /v1/models), or None: the deployment's.
    weights: str | None = Field(None, pattern=r"^upload:[0-9a-f]{64}$")
    method: MethodName = SEED
    # Validated with each job's spec (by the method's model), kept here as asked for: the atlas' id hashes it.
    method_params: AnyMethodParams = Field(default_factory=dict)
    image_size: int = Field(64, ge=1)
    steps: int | None = Field(None, ge=1)
    step_size: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False)
    seed: int = Field(0, ge=0, lt=2**63)
    # A part of the atlas: these layers only (default every conv layer), the first N filters of each.
    layers: list[str] | None = Field(None, min_length=1, max_length=max(len(t.layers) for t in model_tables().values()))
    filters_per_layer: int | None = Field(None, ge=1)

    @field_validator("model")
    @classmethod
    def _known(cls, model: str) -> str:
        if model_table(model) is None:
            raise ValueError(f"no upload {model} of yours: POST /v1/models uploads a model")
        return model


def job_request(request: AtlasRequest, layer: str, filters: list[int]) -> dict[str, Any]:
    """The job request (POST /v1/jobs body) of some filters of one layer of the atlas."""
    body: dict[str, Any] = {
        "model": request.model, "weights": request.weights, "method": request.method,
        "method_params": request.method_params, "layer": layer, "filters": filters, "image_size": request.image_size,
        "seed": request.seed, "grid": ATLAS_GRID,
    }  # fmt: skip
    if request.steps is not None:
        body["steps"] = request.steps
    if request.step_size is not None:
        body["step_size"] = request.step_size
    return body


def plan(
    request: AtlasRequest, limits: Limits, budget: Budget, layers_hint: str = API_LAYERS
) -> list[tuple[str, list[JobSpec]]]:
    """Each layer's jobs: its filters in as few jobs as the per-job filter limit and budget allow.

    Raises ValueError (pydantic's ValidationError) for a bad layer or size, as a job request would;
    `layers_hint` says where the layers are listed (parse_spec)."""
    layers = [layer for layer in conv_layers(request.model) if request.layers is None or layer.name in request.layers]
    unknown = set(request.layers or []) - {layer.name for layer in layers}
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; {layers_hint}")
    planned = []
    for layer in layers:
        count = min(layer.filters, request.filters_per_layer or layer.filters)
        one = parse_spec(job_request(request, layer.name, [0]), limits, layers_hint)
        per_job = max(1, min(limits.max_filters, int(budget.job_flops // max(filter_flops(one), 1))))
        specs = [
            parse_spec(
                job_request(request, layer.name, list(range(start, min(start + per_job, count)))), limits, layers_hint
            )
            for start in range(0, count, per_job)
        ]
        planned.append((layer.name, specs))
    return planned


def atlas_id(request: AtlasRequest) -> str:
    """The atlas's id: a hash of what it renders, so that asking again resumes it."""
    # Without weights when it names none: an atlas asked for before uploads existed keeps its id.
    asked = request.model_dump(mode="json", exclude={"weights"} if request.weights is None else None)
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def record_key(atlas: str) -> str:
    """Where the atlas's record lives in the bucket."""
    return f"{ATLAS_PREFIX}{atlas}.json"


def new_record(atlas: str, request: AtlasRequest, jobs: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """The stored record: parameters and each layer's job ids."""
    return {"id": atlas, "params": request.model_dump(mode="json"), "created_at": now(),
            "layers": [{"layer": layer, "jobs": ids} for layer, ids in jobs]}  # fmt: skip


def resume(record: dict[str, Any], state: Callable[[str], str], submit_again: Callable[[str, int], str]) -> list[str]:
    """Submit anew each job of the atlas that failed, was canceled or was forgotten (the cache keeps what
    it rendered), by its layer and place; the record is updated in place. Returns the new job ids."""
    fresh = []
    for layer in record["layers"]:
        for position, job_id in enumerate(layer["jobs"]):
            if state(job_id) in STOPPED:
                layer["jobs"][position] = submit_again(layer["layer"], position)
                fresh.append(layer["jobs"][position])
    return fresh


def summary(statuses: list[str], done: int, total: int) -> dict[str, Any]:
    """Status and progress of some jobs together: the first of failed, canceled, forgotten, running,
    queued among them, else succeeded."""
    status = next((s for s in (*STOPPED, RUNNING, QUEUED) if s in statuses), SUCCEEDED)
    return {"status": status, "progress": {"done": done, "total": total}}


def unit_entries(storage: Storage, job: Job | None, job_id: str) -> dict[int, dict[str, Any]]:
    """The filters of one atlas job rendered so far, by index, each with `picture`: its bucket key."""
    manifest = storage.get_json(job_key(job_id, MANIFEST_FILE)) if job is None or job.status == SUCCEEDED else None
    if manifest is not None:
        entries = manifest["filters"]
    else:
        entries = [e for record in storage.chunk_records(job_id).values() for e in record["filters"]]
        entries += cache.job_hits(storage, job_id).values()
    hits = {e["index"]: e for e in entries if "cache" in e}
    return {e["index"]: {**e, "picture": cache.picture_of(job_id, e["index"], hits)} for e in entries}
