"""The job spec: one validated description of a visualization, shared by the API, the worker and the CLI.

Two forms of one job. `JobSpecInput` is a job as asked for: `filters` may be a list, a
{start, stop} range or absent. `limited_spec_model(limits)` is its public form: the same fields with
the deployment's limits as field bounds, which both the validator and the OpenAPI schema read, so the
two can't disagree. `JobSpec` is the validated form, from `parse_spec`: `filters` is the explicit list.
It is what the API, the job records, the worker and the CLI use, and it loads stored jobs without the
deployment's limits, so raising a FILTERVIZ_MAX_* never turns a stored job invalid.
All take numbers strictly: JSON `true` is not 1, `"20"` is not 20, `64.0` is not 64.
"""

import secrets
from functools import cache
from math import isqrt
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from shared.layers import ConvLayer, default_layer, find_layer, model_table, model_tables
from shared.methods import METHODS, SEED, AnyMethodParams, MethodName
from shared.models import ARCHITECTURES, DEFAULT_MODEL, LOGITS
from shared.objectives import (
    DEFAULT_OBJECTIVE,
    AnyTerm,
    Channel,
    Class,
    Direction,
    Objective,
    as_terms,
    pictures_per_filter,
)
from shared.uploads import UPLOAD_ID

DEFAULT_FILTER_COUNT = 200  # the seed scans the first 200 filters
# No conv layer of any model has more filters: ranges and indexes are bounded by it before
# anything is built from them (a {start, stop} range of 10^9 would otherwise be materialised).
MAX_LAYER_FILTERS = max(layer.filters for table in model_tables().values() for layer in table.layers)
MIN_PRIORITY, MAX_PRIORITY = -3, 3  # a job's priority in fair dispatch, 0 by default

# Where an unknown layer's message sends the user: the API's route unless the caller names another
# (the CLI: `filterviz layers`), passed to the validators in their context under LAYERS_HINT.
API_LAYERS = "GET /v1/models lists the conv layers"


def _known_model_name(model: str) -> str:
    if model in ARCHITECTURES or UPLOAD_ID.fullmatch(model):
        return model
    raise ValueError(f"unknown model {model[:100]!r}: one of {', '.join(ARCHITECTURES)}, or an upload's id")


# A built-in network, or a whole model someone uploaded (shared/model_uploads.py) by its id.
JobModel = Annotated[
    str,
    AfterValidator(_known_model_name),
    WithJsonSchema({"anyOf": [{"enum": list(ARCHITECTURES)}, {"type": "string", "pattern": f"^{UPLOAD_ID.pattern}$"}]}),
]
LAYERS_HINT = "layers_hint"


class Limits(BaseModel):
    """Bounds a deployment puts on one job, so one request can't occupy the workers for hours."""

    model_config = ConfigDict(frozen=True)

    max_filters: int = 512
    max_image_size: int = 512
    max_steps: int = 200
    max_grid_n: int = 16
    # Pixels a side of the grid picture (n*image_size + (n-1)*margin): a 4096 px grid is 50 MB of raw
    # RGB, and stitching one holds it and its PNG at once.
    max_grid_side: int = 4096


class FilterRange(BaseModel):
    """Filters start..stop-1 of the layer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    start: int = Field(0, ge=0, lt=MAX_LAYER_FILTERS)
    stop: int = Field(ge=1, le=MAX_LAYER_FILTERS)


class Grid(BaseModel):
    """An n x n grid of the best filters with `margin` black pixels between cells."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n: int = Field(8, ge=1)
    margin: int = Field(5, ge=0, le=64)


# The layer check below enforces the exact bound (the layer's own count); the schema states the
# largest any layer has. Kept off the item itself so an out-of-range index is named as `filters`.
FilterIndex = Annotated[int, Field(ge=0, json_schema_extra={"maximum": MAX_LAYER_FILTERS - 1})]
_LIST, _RANGE = "list", "range"


def _filters_form(value: object) -> str:
    return _RANGE if isinstance(value, dict | FilterRange) else _LIST


_AS_RANGE = Annotated[FilterRange, Tag(_RANGE)]
_BY_FORM = Discriminator(_filters_form)
# A list of indexes or a {start, stop} range; an error names only the form sent.
RequestedFilters = Annotated[
    Annotated[list[FilterIndex], Field(max_length=MAX_LAYER_FILTERS), Tag(_LIST)] | _AS_RANGE, _BY_FORM
]


def filters_type(max_count: int) -> Any:
    """RequestedFilters with at most max_count indexes in a list (the public form's bound)."""
    return Annotated[Annotated[list[FilterIndex], Field(max_length=max_count), Tag(_LIST)] | _AS_RANGE, _BY_FORM]


class JobSpecInput(BaseModel):
    """What to render, as asked for. Defaults are the seed script's numbers (README, Methods)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Set on the public form only (see limited_spec_model); None for stored specs.
    limits: ClassVar[Limits | None] = None

    model: JobModel = Field(
        DEFAULT_MODEL, description="the network: GET /v1/models lists them and their layers; or an uploaded model's id"
    )
    # None: the deployment's (FILTERVIZ_WEIGHTS); or weights uploaded for the model (shared/uploads.py).
    weights: str | None = Field(
        None, pattern=r"^upload:[0-9a-f]{64}$", description="uploaded weights for the model (POST /v1/models): its id"
    )
    method: MethodName = SEED
    # The method's own parameters, validated by its model (shared/methods.py); stored as a dict with
    # every default filled in.
    method_params: AnyMethodParams = Field(
        default_factory=dict,
        validate_default=True,
        description="the parameters of the job's method: those of the schema titled by its name",
    )
    layer: str = Field(
        default_layer(DEFAULT_MODEL), max_length=64, description="default: the model's first layer at 1/16 of the input"
    )
    # What the pictures maximise (shared/objectives.py): one term or a list, stored as the list.
    objective: Objective = Field(default_factory=lambda: [Channel()], validate_default=True)
    # A list or a {start, stop} range; validated into the explicit list of filter indices (JobSpec).
    filters: RequestedFilters | None = Field(None, validate_default=True)
    image_size: int = Field(128, ge=1)
    steps: int = Field(20, ge=1)
    step_size: float = Field(1.0, gt=0, le=1000, allow_inf_nan=False)
    grid: Grid = Field(default_factory=Grid, validate_default=True)
    # False: nothing is taken from the result cache (shared/cache.py); every filter is rendered.
    cache: bool = True
    # Its weight in fair dispatch (shared/scheduling.py): a chunk is charged 2^-priority of its cost.
    # Above 0 only for admin tokens (api/access.py); stored specs without it load as 0.
    priority: int = Field(0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    # Recorded with the job so the same request can be rendered again identically.
    seed: int = Field(default_factory=lambda: secrets.randbelow(2**31), ge=0, lt=2**63)

    @property
    def objective_terms(self) -> list[dict[str, Any]]:
        """The objective as plain terms, every default filled in (what the engine and the cache key take)."""
        return [term.model_dump() for term in self.objective]

    @property
    def pictures_per_filter(self) -> int:
        """How many pictures each filter gets (a diversity objective's n), stored side by side as one."""
        return pictures_per_filter(self.objective_terms)

    @property
    def grid_side(self) -> int:
        """Width (and height) in pixels of this job's grid picture."""
        return grid_side(self.grid.n, self.image_size, self.grid.margin)

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        # steps and step_size default to the method's own (step_size is its learning rate); the layer
        # to the model's. Anything but a known name is left for the field's own check to name.
        if not isinstance(data, dict):
            return data
        model, name = data.get("model", DEFAULT_MODEL), data.get("method", SEED)
        layer = {"layer": default_layer(model)} if isinstance(model, str) and model_table(model) else {}
        method = METHODS.get(name) if isinstance(name, str) else None
        steps = {"steps": method.steps, "step_size": method.step_size} if method else {}
        return {**steps, **layer, **data}

    @field_validator("model")
    @classmethod
    def _known_upload(cls, model: str) -> str:
        # A stored spec was checked at submission: a process that doesn't look uploads up (no bucket)
        # still loads it.
        if cls.limits is not None and model_table(model) is None:
            raise ValueError(f"no upload {model} of yours: POST /v1/models uploads a model")
        return model

    @field_validator("weights")
    @classmethod
    def _weights_for_architecture(cls, weights: str | None, info: ValidationInfo) -> str | None:
        if weights is not None and info.data.get("model", DEFAULT_MODEL) not in ARCHITECTURES:
            raise ValueError("an uploaded model carries its own weights: leave `weights` out")
        return weights

    @field_validator("method_params")
    @classmethod
    def _method_params_valid(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # `method` picks the model. A method that failed its own check is not in info.data: its
        # parameters are left unchecked rather than checked against another's.
        method = METHODS.get(info.data.get("method", ""))
        # Its ValidationError names each bad parameter as method_params.<name>.
        return method.resolve(params) if method else params

    @field_validator("layer")
    @classmethod
    def _known_layer(cls, layer: str, info: ValidationInfo) -> str:
        model = info.data.get("model", DEFAULT_MODEL)
        if find_layer(layer, model) is None and (cls.limits is not None or model_table(model) is not None):
            raise ValueError(
                f"unknown layer {layer!r} for {model}; {(info.context or {}).get(LAYERS_HINT, API_LAYERS)}"
            )
        if layer == LOGITS and info.data.get("weights") is not None:
            raise ValueError(f"uploaded weights are without the top: {LOGITS!r} needs the deployment's weights")
        return layer

    @field_validator("objective", mode="before")
    @classmethod
    def _one_term_or_many(cls, objective: Any) -> Any:
        return as_terms(objective)

    @field_validator("objective")
    @classmethod
    def _objective_fits(cls, terms: list[AnyTerm], info: ValidationInfo) -> list[AnyTerm]:
        if info.data.get("method") == SEED and [term.model_dump() for term in terms] != DEFAULT_OBJECTIVE:
            raise ValueError("method seed maximises its channel's mean alone (the Keras example): choose another")
        layer = _layer_of(info)
        for term in terms:
            if isinstance(term, Direction) and layer is not None and len(term.vector) != layer.filters:
                raise ValueError(f"a direction in {layer.name} has {layer.filters} numbers, not {len(term.vector)}")
            if isinstance(term, Class) and layer is not None and layer.name != LOGITS:
                carrying = ", ".join(name for name, architecture in ARCHITECTURES.items() if architecture.classifier)
                raise ValueError(
                    f"a class term reads a classifier's logits: choose layer {LOGITS!r} (models: {carrying})"
                )
        return terms

    @field_validator("filters")
    @classmethod
    def _filters_in_layer(cls, filters: list[int] | FilterRange | None, info: ValidationInfo) -> list[int]:
        layer = _layer_of(info)
        count, name = (layer.filters, layer.name) if layer else (MAX_LAYER_FILTERS, "every layer")
        limit = cls.limits.max_filters if cls.limits else MAX_LAYER_FILTERS
        if filters is None:
            filters = FilterRange(stop=min(DEFAULT_FILTER_COUNT, count, limit))
        if isinstance(filters, FilterRange):
            # Checked on the two numbers, before the list is built.
            if filters.stop <= filters.start:
                raise ValueError(f"empty range: stop ({filters.stop}) must be greater than start ({filters.start})")
            if filters.stop - filters.start > limit:
                raise ValueError(f"{filters.stop - filters.start} filters asked for; at most {limit} per job")
            if filters.stop > count:
                raise ValueError(f"filter {filters.stop - 1} is out of range: {name} has filters 0..{count - 1}")
            return list(range(filters.start, filters.stop))
        if not filters:
            raise ValueError("at least one filter is needed")
        if len(filters) > limit:
            raise ValueError(f"{len(filters)} filters asked for; at most {limit} per job")
        if len(set(filters)) != len(filters):
            raise ValueError("a filter is listed more than once")
        if max(filters) >= count:
            raise ValueError(f"filter {max(filters)} is out of range: {name} has filters 0..{count - 1}")
        return filters

    @field_validator("grid")
    @classmethod
    def _grid_fits(cls, grid: Grid, info: ValidationInfo) -> Grid:
        # The public form only: a stored job keeps the grid it was accepted with.
        if cls.limits is None or "filters" not in info.data or "image_size" not in info.data:
            return grid
        # Cells past the filters asked for would always be black: n is taken down to the smallest
        # grid that holds them all, so a cheap job can't ask for a huge empty picture.
        n = min(grid.n, isqrt(len(info.data["filters"]) - 1) + 1)
        side = grid_side(n, info.data["image_size"], grid.margin)
        if side > cls.limits.max_grid_side:
            raise ValueError(
                f"the grid would be {side} px a side (n*image_size + (n-1)*margin with n={n}), above the "
                f"limit of {cls.limits.max_grid_side}; ask for a smaller grid.n, grid.margin or image_size"
            )
        return grid if n == grid.n else grid.model_copy(update={"n": n})

    @field_validator("image_size")
    @classmethod
    def _image_size_fits(cls, size: int, info: ValidationInfo) -> int:
        layer = _layer_of(info)
        if layer is not None and size < layer.min_image_size:
            raise ValueError(
                f"image_size {size} is too small for {layer.name}: it needs at least {layer.min_image_size}"
            )
        return size


def _layer_of(info: ValidationInfo) -> ConvLayer | None:
    """The spec's layer, where its model and layer passed their checks."""
    if "layer" not in info.data or "model" not in info.data:
        return None
    return find_layer(info.data["layer"], info.data["model"])


class JobSpec(JobSpecInput):
    """A validated job: what is stored, queued and rendered. `filters` is the explicit list."""

    filters: list[FilterIndex] = Field(max_length=MAX_LAYER_FILTERS)


def grid_side(n: int, image_size: int, margin: int) -> int:
    """Width (and height) of an n x n grid: n cells and n-1 margins."""
    return n * image_size + (n - 1) * margin


def _bounded(model: type[BaseModel], name: str, **bounds: Any) -> tuple[Any, FieldInfo]:
    """Field `name` of `model` with extra bounds (e.g. le=512) on top of its own."""
    field = model.model_fields[name]
    return field.annotation, FieldInfo.merge_field_infos(field, Field(**bounds))


@cache
def limited_spec_model(limits: Limits) -> type[JobSpecInput]:
    """The public form of a job: the deployment's limits as field bounds (validator and OpenAPI schema)."""
    grid = create_model("Grid", __base__=Grid, n=_bounded(Grid, "n", le=limits.max_grid_n))
    filters = JobSpecInput.model_fields["filters"]
    filter_list = filters_type(min(limits.max_filters, MAX_LAYER_FILTERS))
    # Named JobSpec: the OpenAPI document's name for a job's parameters.
    model = create_model(
        "JobSpec",
        __base__=JobSpecInput,
        filters=(filter_list | None, FieldInfo.merge_field_infos(filters)),
        image_size=_bounded(JobSpecInput, "image_size", le=limits.max_image_size),
        steps=_bounded(JobSpecInput, "steps", le=limits.max_steps),
        grid=(grid, Field(default_factory=grid, validate_default=True)),
    )
    model.limits = limits
    return model


def parse_spec(data: object, limits: Limits | None = None, layers_hint: str = API_LAYERS) -> JobSpec:
    """Validate a request body (a dict) into a JobSpec, under the deployment's limits.

    The result is the validated form, loaded back from the input's JSON: what is accepted here is
    exactly what the job records and the worker will load. `layers_hint`: where an unknown layer's
    message sends the user (the API's route, or the CLI's command).
    """
    public = limited_spec_model(limits or Limits()).model_validate(data, context={LAYERS_HINT: layers_hint})
    return JobSpec.model_validate_json(public.model_dump_json())


def _short(value: object) -> str:
    """A value as echoed in an error: a 4000-digit number is not worth sending back whole."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"


def _reason(item: Any) -> str:
    """A pydantic error as a sentence naming the limit, where there is one."""
    ctx = item.get("ctx") or {}
    if item["type"] == "less_than_equal":
        return f"{_short(item['input'])} is above the limit of {ctx['le']}"
    if item["type"] == "too_long" and item["loc"][:1] == ("filters",):
        return f"{ctx['actual_length']} filters asked for; at most {ctx['max_length']} per job"
    return item["msg"].removeprefix("Value error, ")


def describe_problems(error: ValidationError) -> list[dict[str, str]]:
    """Each problem as {"field": dotted path, "reason": text}, for HTTP bodies and CLI messages."""
    problems = []
    for item in error.errors(include_url=False):
        # The filters union adds the form's tag to the path (filters.range.stop); keep the field names.
        path = [str(part) for part in item["loc"] if part not in (_LIST, _RANGE)]
        problems.append({"field": ".".join(path) or "body", "reason": _reason(item)})
    return problems
