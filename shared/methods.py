"""The rendering methods and their parameters: the API, the spec, the CLI and the engine read them.

No TensorFlow here: the API lists and validates methods without it. A method is a named recipe
(worker/engine/recipes.py builds it from these numbers). `steps` and `step_size` are the job
spec's own fields; each method gives them its own defaults, and `step_size` is the learning rate
of the method's optimiser. Everything else a method takes is a field of its `params`, a pydantic
model (one per method) that validates it, gives its default and states its bounds and meaning for
the OpenAPI document and /v1/models.
Sources of the numbers: README, Methods (the papers and repositories they come from).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, create_model, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# A parameter's value, once validated: int, float or bool by its field's type.
ParamValue = int | float | bool

SEED = "seed"
MULTISCALE = "multiscale"
FOURIER = "fourier"
MACO = "maco"


class MethodParams(BaseModel):
    """What every method's parameters model is: numbers taken strictly as in the job spec (JSON `true`
    is not 1, `"20"` is not 20, `64.0` is not 64, but an int is a float), finite, and no unknown name.
    Each model is titled by its method's name; its fields' bounds are inclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, given: Any) -> Any:
        # Before pydantic's own "Extra inputs are not permitted", which doesn't say what the method takes.
        unknown = sorted(set(given) - set(cls.model_fields)) if isinstance(given, dict) else []
        if unknown:
            takes = ", ".join(sorted(cls.model_fields)) or "none"
            method = cls.model_config.get("title")
            raise ValueError(f"unknown parameter {unknown[0]!r} for method {method} (it takes: {takes})")
        return given


def _params_model(method: str, **fields: Any) -> type[MethodParams]:
    """The parameters model of `method` (SeedParams for seed), titled by its name, with these fields in order."""
    return create_model(
        f"{method.capitalize()}Params", __base__=MethodParams, __cls_kwargs__={"title": method}, **fields
    )


def _number(kind: type[int | float], default: float, low: float, high: float, description: str) -> Any:
    """A field of `_params_model`: a number of `kind` with its default and inclusive bounds."""
    return kind, Field(default, ge=low, le=high, description=description)


def _redirect(default: int) -> Any:
    return _number(
        int, default, 0, 1000,
        "for this many first steps, a ReLU that blocks all of an image's gradient lets through the part "
        "that would raise its input (Lucid), so that filters which start dead can move; 0 turns it off",
    )  # fmt: skip


def _pre_relu(default: bool) -> Any:
    return bool, Field(default, description="maximise the channel before its ReLU")


def _transforms(jitter: int, scale: float, rotate: float, pad: int) -> dict[str, Any]:
    return {
        "pad": _number(int, pad, 0, 64, "grey border added before the transforms, in pixels"),
        "jitter": _number(int, jitter, 0, 64, "random shift each step, up to this many pixels each way"),
        "scale": _number(float, scale, 0, 0.5, "random zoom each step, by a factor within 1 +- scale"),
        "rotate": _number(float, rotate, 0, 45, "random rotation each step, within +- this many degrees"),
    }


@dataclass(frozen=True)
class Method:
    """A named recipe: what it is, its own defaults for steps and step_size, and its parameters' model."""

    name: str
    summary: str
    steps: int
    step_size: float
    step_size_means: str
    params: type[MethodParams]
    # Its images come out of a sigmoid, on a 0..255 scale, and are shown as they are; the others' are
    # standardised to a contrast (its `contrast` parameter, or the seed's).
    shown_as_is: bool = False

    def resolve(self, given: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """Every parameter of this method: the given values validated by its model (pydantic's
        ValidationError says what is wrong), the others at their defaults."""
        return self.params.model_validate(dict(given or {})).model_dump()

    def images_per_filter(self, params: Mapping[str, ParamValue]) -> int:
        """Network passes per filter per step (MACO looks at several crops of each image)."""
        return int(params.get("crops", 1))

    def network_side(self, params: Mapping[str, ParamValue], image_size: int) -> int:
        """Side of the images the network sees (Lucid's transforms pad the image first)."""
        return image_size + 2 * int(params.get("pad", 0))

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, for /v1/models: the parameters as its model's JSON schema states them."""
        fields = self.params.model_json_schema()["properties"]
        return {
            "name": self.name,
            "summary": self.summary,
            "defaults": {"steps": self.steps, "step_size": self.step_size},
            "step_size": self.step_size_means,
            "params": [_describe_param(name, field) for name, field in fields.items()],
        }


def _describe_param(name: str, field: dict[str, Any]) -> dict[str, Any]:
    """One parameter for /v1/models, from its JSON schema; a boolean has no bounds (None)."""
    return {
        "name": name,
        "type": field["type"],
        "default": field["default"],
        "minimum": field.get("minimum"),
        "maximum": field.get("maximum"),
        "help": field["description"],
    }


_SEED = Method(
    SEED,
    "The Keras example the service started from: grey noise, RMS-normalised gradient ascent on raw pixels, "
    "a filter stops once its loss is <= 0.",
    steps=20,
    step_size=1.0,
    step_size_means="size of the RMS-normalised gradient step, in pixel values",
    params=_params_model(SEED),
)

_MULTISCALE = Method(
    MULTISCALE,
    "Keras' 2019 revision: the seed's ascent over octaves of growing size (bicubic float resizes between "
    "them), on VGG-preprocessed pixels, with light jitter, zoom and rotation.",
    steps=120,
    step_size=1.0,
    step_size_means="size of the RMS-normalised gradient step, in pixel values",
    params=_params_model(
        MULTISCALE,
        octaves=_number(int, 7, 1, 12, "number of sizes, the first image_size / octave_scale^(octaves-1)"),
        octave_scale=_number(float, 1.2, 1.01, 2.0, "size ratio between octaves"),
        # Light transforms, not in the 2019 example: they took robustness (bench/quality.py) from
        # about 0 to 0.85 on block5_conv1 at 128 px.
        **_transforms(jitter=8, scale=0.05, rotate=5.0, pad=0),
        contrast=_number(float, 0.25, 0.01, 1.0, "standard deviation of the shown picture (0..1 scale)"),
        pre_relu=_pre_relu(False),
        # Each new octave can lose a filter revived on the last: a longer redirect than Lucid's 16.
        relu_redirect_steps=_redirect(32),
    ),
)

_FOURIER = Method(
    FOURIER,
    "Lucid's recipe: a 1/f-scaled Fourier image with decorrelated colour and a sigmoid, the standard pad, "
    "jitter, scale and rotate transforms drawn per image, Adam.",
    steps=128,
    step_size=0.05,
    step_size_means="Adam's learning rate",
    shown_as_is=True,
    params=_params_model(
        FOURIER,
        decay_power=_number(float, 1.0, 0.0, 3.0, "frequency f's amplitude is scaled by 1/f^decay_power"),
        init_sd=_number(float, 0.01, 0.0, 1.0, "standard deviation of the starting spectrum"),
        **_transforms(jitter=6, scale=0.1, rotate=10.0, pad=12),
        pre_relu=_pre_relu(True),
        relu_redirect_steps=_redirect(16),
    ),
)

_MACO = Method(
    MACO,
    "MACO (Fel et al. 2023): only the Fourier phase is optimised, under a fixed natural-image 1/f^alpha "
    "magnitude; each step looks at random crops of each image with noise added; NAdam.",
    steps=64,
    # Xplique and Horama use 1.0 on 512-1280 px buffers; on 64-128 px pictures 0.1-0.3 reached a higher
    # objective in bench/quality.py (1.0 moves every phase by about a radian a step).
    step_size=0.3,
    step_size_means="NAdam's learning rate",
    shown_as_is=True,
    params=_params_model(
        MACO,
        magnitude_slope=_number(float, 1.3, 0.0, 3.0, "the fixed magnitude falls as 1/f^magnitude_slope"),
        crops=_number(int, 4, 1, 16, "random crops of each image looked at per step"),
        crop_start=_number(float, 0.7, 0.05, 1.0, "crop side at the first step, a fraction of the image"),
        crop_end=_number(float, 0.4, 0.05, 1.0, "crop side at the last step (changes linearly)"),
        noise=_number(float, 0.04, 0.0, 0.5, "noise on each crop: Gaussian sd + uniform +-sd/2 (0..1 scale)"),
        pre_relu=_pre_relu(True),
        relu_redirect_steps=_redirect(16),
    ),
)

METHODS: dict[str, Method] = {m.name: m for m in (_SEED, _MULTISCALE, _FOURIER, _MACO)}

# A method's name as a pydantic field type: one of METHODS (the schema's enum). Built from data, so
# the type checker sees a str.
if TYPE_CHECKING:
    MethodName = str
else:
    MethodName = Literal[tuple(METHODS)]


class _EachMethodsParams:
    """The JSON schema of a job's `method_params`: any one of the methods' parameters models. The job
    spec validates them by the model of its `method` (shared/spec.py)."""

    def __get_pydantic_json_schema__(self, _schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(
            core_schema.union_schema([method.params.__pydantic_core_schema__ for method in METHODS.values()])
        )


# A job's method parameters as a pydantic field type: a dict, described in the schema as each method's model.
AnyMethodParams = Annotated[dict[str, Any], _EachMethodsParams()]


def describe_methods() -> list[dict[str, Any]]:
    """Every method with its defaults and parameters, for /v1/models."""
    return [method.describe() for method in METHODS.values()]
