"""The rendering methods and their parameters, as data: the API, the spec, the CLI and the engine read it.

No TensorFlow here: the API lists and validates methods without it. A method is a named recipe
(worker/engine/recipes.py builds it from these numbers). `steps` and `step_size` are the job
spec's own fields; each method gives them its own defaults, and `step_size` is the learning rate
of the method's optimiser. Everything else a method takes is one of its `params`.
Sources of the numbers: README, Methods (the papers and repositories they come from).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

# A parameter's value, once checked: int, float or bool by its kind.
ParamValue = int | float | bool

SEED = "seed"
MULTISCALE = "multiscale"
FOURIER = "fourier"
MACO = "maco"


@dataclass(frozen=True)
class MethodParam:
    """One tunable number of a method, with its default and inclusive bounds."""

    name: str
    kind: type  # int, float or bool
    default: ParamValue
    minimum: float | None
    maximum: float | None
    help: str

    def check(self, value: object) -> ParamValue:
        """The value as this parameter's type; ValueError says why it isn't one."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        # bool is an int in Python: a JSON `true` is not a number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} must be a number, got {value!r}")
        # Before the whole-number check: int() of an infinity raises OverflowError.
        if not math.isfinite(value):
            raise ValueError(f"{self.name} must be finite")
        if self.kind is int and value != int(value):
            raise ValueError(f"{self.name} must be a whole number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} {value} is below the minimum of {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} {value} is above the maximum of {self.maximum:g}")
        return self.kind(value)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, for /v1/models."""
        return {
            "name": self.name,
            "type": {int: "integer", float: "number", bool: "boolean"}[self.kind],
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "help": self.help,
        }


@dataclass(frozen=True)
class Method:
    """A named recipe: what it is, its own defaults for steps and step_size, and its parameters."""

    name: str
    summary: str
    steps: int
    step_size: float
    step_size_means: str
    params: tuple[MethodParam, ...] = ()

    def resolve(self, given: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """Every parameter of this method: the given values checked, the others at their defaults."""
        given = dict(given or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"unknown parameter {unknown[0]!r} for method {self.name} (it takes: {allowed})")
        return {p.name: p.check(given[p.name]) if p.name in given else p.default for p in self.params}

    def images_per_filter(self, params: Mapping[str, ParamValue]) -> int:
        """Network passes per filter per step (MACO looks at several crops of each image)."""
        return int(params.get("crops", 1))

    def network_side(self, params: Mapping[str, ParamValue], image_size: int) -> int:
        """Side of the images the network sees (Lucid's transforms pad the image first)."""
        return image_size + 2 * int(params.get("pad", 0))

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, for /v1/models."""
        return {
            "name": self.name,
            "summary": self.summary,
            "defaults": {"steps": self.steps, "step_size": self.step_size},
            "step_size": self.step_size_means,
            "params": [p.describe() for p in self.params],
        }


def _redirect(default: int) -> MethodParam:
    return MethodParam(
        "relu_redirect_steps", int, default, 0, 1000,
        "for this many first steps, a ReLU that blocks all of an image's gradient lets through the part "
        "that would raise its input (Lucid), so that filters which start dead can move; 0 turns it off",
    )  # fmt: skip


def _pre_relu(default: bool) -> MethodParam:
    return MethodParam("pre_relu", bool, default, None, None, "maximise the channel before its ReLU")


def _transforms(jitter: int, scale: float, rotate: float, pad: int) -> tuple[MethodParam, ...]:
    return (
        MethodParam("pad", int, pad, 0, 64, "grey border added before the transforms, in pixels"),
        MethodParam("jitter", int, jitter, 0, 64, "random shift each step, up to this many pixels each way"),
        MethodParam("scale", float, scale, 0, 0.5, "random zoom each step, by a factor within 1 +- scale"),
        MethodParam("rotate", float, rotate, 0, 45, "random rotation each step, within +- this many degrees"),
    )


_SEED = Method(
    SEED,
    "The Keras example the service started from: grey noise, RMS-normalised gradient ascent on raw pixels, "
    "a filter stops once its loss is <= 0.",
    steps=20,
    step_size=1.0,
    step_size_means="size of the RMS-normalised gradient step, in pixel values",
)

_MULTISCALE = Method(
    MULTISCALE,
    "Keras' 2019 revision: the seed's ascent over octaves of growing size (bicubic float resizes between "
    "them), on VGG-preprocessed pixels, with light jitter, zoom and rotation.",
    steps=120,
    step_size=1.0,
    step_size_means="size of the RMS-normalised gradient step, in pixel values",
    params=(
        MethodParam("octaves", int, 7, 1, 12, "number of sizes, the first image_size / octave_scale^(octaves-1)"),
        MethodParam("octave_scale", float, 1.2, 1.01, 2.0, "size ratio between octaves"),
        # Light transforms, not in the 2019 example: they took robustness (bench/quality.py) from
        # about 0 to 0.85 on block5_conv1 at 128 px.
        *_transforms(jitter=8, scale=0.05, rotate=5.0, pad=0),
        MethodParam("contrast", float, 0.25, 0.01, 1.0, "standard deviation of the shown picture (0..1 scale)"),
        _pre_relu(False),
        # Each new octave can lose a filter revived on the last: a longer redirect than Lucid's 16.
        _redirect(32),
    ),
)

_FOURIER = Method(
    FOURIER,
    "Lucid's recipe: a 1/f-scaled Fourier image with decorrelated colour and a sigmoid, the standard pad, "
    "jitter, scale and rotate transforms drawn per image, Adam.",
    steps=128,
    step_size=0.05,
    step_size_means="Adam's learning rate",
    params=(
        MethodParam("decay_power", float, 1.0, 0.0, 3.0, "frequency f's amplitude is scaled by 1/f^decay_power"),
        MethodParam("init_sd", float, 0.01, 0.0, 1.0, "standard deviation of the starting spectrum"),
        *_transforms(jitter=6, scale=0.1, rotate=10.0, pad=12),
        _pre_relu(True),
        _redirect(16),
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
    params=(
        MethodParam("magnitude_slope", float, 1.3, 0.0, 3.0, "the fixed magnitude falls as 1/f^magnitude_slope"),
        MethodParam("crops", int, 4, 1, 16, "random crops of each image looked at per step"),
        MethodParam("crop_start", float, 0.7, 0.05, 1.0, "crop side at the first step, a fraction of the image"),
        MethodParam("crop_end", float, 0.4, 0.05, 1.0, "crop side at the last step (changes linearly)"),
        MethodParam("noise", float, 0.04, 0.0, 0.5, "noise on each crop: Gaussian sd + uniform +-sd/2 (0..1 scale)"),
        _pre_relu(True),
        _redirect(16),
    ),
)

METHODS: dict[str, Method] = {m.name: m for m in (_SEED, _MULTISCALE, _FOURIER, _MACO)}

# A method's name as a pydantic field type: one of METHODS (the schema's enum). Built from data, so
# the type checker sees a str.
if TYPE_CHECKING:
    MethodName = str
else:
    MethodName = Literal[tuple(METHODS)]


def describe_methods() -> list[dict[str, Any]]:
    """Every method with its defaults and parameters, for /v1/models."""
    return [method.describe() for method in METHODS.values()]
