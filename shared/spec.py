"""The job spec: one validated description of a visualization, shared by the API, the worker and the CLI."""

import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shared.layers import find_layer

DEFAULT_FILTER_COUNT = 200  # the seed scans the first 200 filters


class Limits(BaseModel):
    """Bounds a deployment puts on one job, so one request can't occupy the workers for hours."""

    max_filters: int = 512
    max_image_size: int = 512
    max_steps: int = 200
    max_grid_n: int = 16


class FilterRange(BaseModel):
    """Filters start..stop-1 of the layer."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(0, ge=0)
    stop: int = Field(ge=1)


class Grid(BaseModel):
    """An n x n grid of the best filters with `margin` black pixels between cells."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(8, ge=1)
    margin: int = Field(5, ge=0, le=64)

    @field_validator("n")
    @classmethod
    def _n_within_limit(cls, n: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_grid_n
        if n > limit:
            raise ValueError(f"grid n {n} is above the limit of {limit}")
        return n


class JobSpec(BaseModel):
    """What to render. Defaults are the seed script's numbers (see SPEC.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["vgg16"] = "vgg16"
    method: Literal["seed"] = "seed"
    layer: str = "block5_conv1"
    # Accepts a list or a {start, stop} range; stored as the explicit list of filter indices.
    filters: list[Annotated[int, Field(ge=0)]] | FilterRange | None = Field(None, validate_default=True)
    image_size: int = Field(128, ge=1)
    steps: int = Field(20, ge=1)
    step_size: float = Field(1.0, gt=0, le=1000, allow_inf_nan=False)
    grid: Grid = Field(default_factory=Grid)
    # Recorded with the job so the same request can be rendered again identically.
    seed: int = Field(default_factory=lambda: secrets.randbelow(2**31), ge=0, lt=2**63)

    @property
    def grid_side(self) -> int:
        """Width (and height) in pixels of this job's grid picture."""
        return grid_side(self.grid.n, self.image_size, self.grid.margin)

    @field_validator("layer")
    @classmethod
    def _known_layer(cls, layer: str, info: ValidationInfo) -> str:
        model = info.data.get("model", "vgg16")
        if find_layer(layer, model) is None:
            raise ValueError(f"unknown layer {layer!r} for {model}; GET /v1/models lists the conv layers")
        return layer

    @field_validator("filters")
    @classmethod
    def _filters_in_layer(cls, filters: list[int] | FilterRange | None, info: ValidationInfo) -> list[int]:
        layer = find_layer(info.data["layer"]) if "layer" in info.data else None
        if filters is None:
            return list(range(min(DEFAULT_FILTER_COUNT, layer.filters if layer else DEFAULT_FILTER_COUNT)))
        if isinstance(filters, FilterRange):
            if filters.stop <= filters.start:
                raise ValueError(f"empty range: stop ({filters.stop}) must be greater than start ({filters.start})")
            filters = list(range(filters.start, filters.stop))
        if not filters:
            raise ValueError("at least one filter is needed")
        if len(set(filters)) != len(filters):
            raise ValueError("a filter is listed more than once")
        limit = _limits(info).max_filters
        if len(filters) > limit:
            raise ValueError(f"{len(filters)} filters asked for; at most {limit} per job")
        if layer is not None and max(filters) >= layer.filters:
            raise ValueError(f"filter {max(filters)} is out of range: {layer.name} has filters 0..{layer.filters - 1}")
        return filters

    @field_validator("image_size")
    @classmethod
    def _image_size_fits(cls, size: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_image_size
        if size > limit:
            raise ValueError(f"image_size {size} is above the limit of {limit}")
        layer = find_layer(info.data["layer"]) if "layer" in info.data else None
        if layer is not None and size < layer.min_image_size:
            raise ValueError(
                f"image_size {size} is too small for {layer.name}: it needs at least {layer.min_image_size}"
            )
        return size

    @field_validator("steps")
    @classmethod
    def _steps_within_limit(cls, steps: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_steps
        if steps > limit:
            raise ValueError(f"steps {steps} is above the limit of {limit}")
        return steps


def grid_side(n: int, image_size: int, margin: int) -> int:
    """Width (and height) of an n x n grid: n cells and n-1 margins."""
    return n * image_size + (n - 1) * margin


def _limits(info: ValidationInfo) -> Limits:
    return (info.context or {}).get("limits") or Limits()


def parse_spec(data: object, limits: Limits | None = None) -> JobSpec:
    """Validate a request body (a dict) into a JobSpec, under the deployment's limits."""
    return JobSpec.model_validate(data, context={"limits": limits or Limits()})


def describe_problems(error: ValidationError) -> list[dict[str, str]]:
    """Each problem as {"field": dotted path, "reason": text}, for HTTP bodies and CLI messages."""
    problems = []
    for item in error.errors(include_url=False):
        # Union members add their type name to the path (e.g. filters.list[...]); keep the field names.
        path = [str(part) for part in item["loc"] if not str(part).startswith(("list[", "FilterRange"))]
        reason = item["msg"].removeprefix("Value error, ")
        problems.append({"field": ".".join(path) or "body", "reason": reason})
    return problems
