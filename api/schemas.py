"""The JSON bodies the API answers with, as pydantic models: the OpenAPI document's components.

They describe the answers; the routes build them as dicts (api/resources.py). A field is required
only where every answer has it, so the document promises no more than the routes keep.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from shared.models import ModelName, Preprocessing

# A job's parameters: the job spec under this deployment's limits, a component the document builds itself.
JobParams = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/JobSpec"}]})]


class Problem(BaseModel):
    field: str
    reason: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    problems: list[Problem] = []


class Error(BaseModel):
    """Every 4xx and 5xx: a code to branch on, a message to show, and each bad field named."""

    error: ErrorDetail


class Progress(BaseModel):
    done: int
    total: int


class QueuePlace(BaseModel):
    """A queued job's place in fair dispatch: chunks sent before its next one, and an estimated start in
    seconds from recent chunks (null before any)."""

    chunks_ahead: int
    estimated_start_seconds: float | None


class Job(BaseModel):
    """A job: status, progress, parameters, timestamps, error and links."""

    id: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress: Progress
    params: JobParams
    weights: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    # Null once it runs.
    queue: QueuePlace | None = None
    links: dict[str, Any]


class JobList(BaseModel):
    jobs: list[Job]


class StoredFilter(BaseModel):
    index: int
    loss: float
    dead: bool
    url: str


class FilterList(BaseModel):
    id: str
    status: str
    filters: list[StoredFilter]


class UploadForm(BaseModel):
    """The form of POST /v1/models: a weights file and the architecture it is for, or a whole Keras model."""

    file: bytes = Field(
        description="Keras weights (HDF5: model.save_weights of the architecture without its top), or a whole model "
        "(model.save('mine.keras'): Keras' own layers only, RGB input of a fixed size)"
    )
    architecture: ModelName | None = Field(None, description="what the weights are for; none for a whole model")
    preprocessing: Preprocessing = Field(
        "none", description="how a whole model wants its RGB input (0..255): caffe, tf (-1..1), torch, or none (as is)"
    )
    name: str | None = Field(None, max_length=64, description="a label for people")


class UploadedLayer(BaseModel):
    name: str
    filters: int
    min_image_size: int


class Upload(BaseModel):
    """An upload: weights (name them as a job's `weights`) or a whole model (as its `model`), by its `id`."""

    kind: Literal["weights", "model"]
    id: str = Field(pattern=r"^upload:[0-9a-f]{64}$")
    architecture: ModelName | None
    name: str | None
    bytes: int
    parameters: int
    created_at: str
    # A whole model's: its saved input side, its preprocessing and the layers shown (its convolutions).
    input_side: int | None = None
    preprocessing: Preprocessing | None = None
    layers: list[UploadedLayer] | None = None


class Models(BaseModel):
    """Each model with its conv layers (filter counts, smallest image) and the methods with their parameters."""

    models: list[dict[str, Any]]
    methods: list[dict[str, Any]] = []
    objectives: list[dict[str, Any]] = []


class Workers(BaseModel):
    count: int
    workers: list[dict[str, Any]]


class WebhookSecret(BaseModel):
    owner: str | None
    secret: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    """Each check says "ok" or why not; live workers are reported, not required."""

    status: str
    checks: dict[str, str]


class Atlas(BaseModel):
    """An atlas: status and progress, in all and by layer."""

    id: str
    status: str


class AtlasList(BaseModel):
    atlases: list[Atlas]


class AtlasUnits(BaseModel):
    units: list[dict[str, Any]]


class AnyObject(BaseModel):
    """A JSON object (a manifest, this document)."""
