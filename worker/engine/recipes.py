"""Which method is which recipe of parts. The numbers come from shared/methods.py (TF-free, so the API
lists and validates the same ones); this module only says which part each number feeds."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.methods import FOURIER, MACO, METHODS, MULTISCALE
from worker.engine.optimizers import Adam, NAdam, NormalisedAscent
from worker.engine.param import Fourier, Phase, Pixels
from worker.engine.transforms import Affine, Crops


@dataclass(frozen=True)
class Recipe:
    """A method made of parts: parameterisation, transforms, objective, optimiser and schedule."""

    method: str
    param: Pixels | Fourier | Phase
    transform: Affine | Crops
    optimizer: NormalisedAscent | Adam | NAdam
    pre_relu: bool = False
    redirect_steps: int = 0
    octaves: int = 1
    octave_scale: float = 1.2


def _affine(p: Mapping[str, Any]) -> Affine:
    return Affine(pad=p["pad"], jitter=p["jitter"], scale=p["scale"], rotate=p["rotate"])


def build_recipe(method: str, params: Mapping[str, Any] | None = None) -> Recipe:
    """The recipe of a method (not `seed`, whose loop is its own) with its parameters resolved."""
    # Each value has its field's type (int, float or bool): resolve validated it by the method's model.
    p: Mapping[str, Any] = METHODS[method].resolve(params)
    common = {"pre_relu": p.get("pre_relu", False), "redirect_steps": p.get("relu_redirect_steps", 0)}
    if method == MULTISCALE:
        return Recipe(
            method, Pixels(), _affine(p), NormalisedAscent(), **common,
            octaves=p["octaves"], octave_scale=p["octave_scale"],
        )  # fmt: skip
    if method == FOURIER:
        return Recipe(method, Fourier(p["decay_power"], p["init_sd"]), _affine(p), Adam(), **common)
    if method == MACO:
        crops = Crops(copies=p["crops"], start=p["crop_start"], end=p["crop_end"], noise=p["noise"])
        return Recipe(method, Phase(p["magnitude_slope"]), crops, NAdam(), **common)
    raise ValueError(f"method {method!r} has no recipe")
