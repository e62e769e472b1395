"""The layers a picture is shown for, per network, and the convolutions up to each: read from
shared/model_tables.json (written from the networks by `python -m worker.architectures`), so the API
validates and prices a job without TensorFlow.

A whole model someone uploaded (shared/model_uploads.py) has its table in its record in the bucket: a
process that validates or renders jobs installs a lookup for them (`use_uploaded_models`).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from shared.models import ARCHITECTURES, DEFAULT_MODEL, TABLES, Preprocessing


@dataclass(frozen=True)
class Convolution:
    """One convolution of a network, as the cost model counts it: the input's shrink factor at its
    output, its multiply-adds per output pixel and its output channels."""

    downsampling: int
    macs_per_pixel: int
    channels: int


def convolution_macs(kind: str, kernel_area: int, channels_in: int, channels: int, depth_multiplier: int = 1,
                     groups: int = 1) -> int:  # fmt: skip
    """Multiply-adds per output pixel of a Keras convolution layer (`kind` its class name) with `channels`
    outputs."""
    if kind == "SeparableConv2D":
        return kernel_area * channels_in * depth_multiplier + channels_in * depth_multiplier * channels
    if kind == "DepthwiseConv2D":
        return kernel_area * channels_in * depth_multiplier
    return kernel_area * channels_in // groups * channels


@dataclass(frozen=True)
class ConvLayer:
    """A layer shown: its Keras name, channel (filter) count, how much smaller than the input its
    output is, how many of the network's convolutions run up to it, and the smallest input side it
    takes (its output at least one pixel, and no smaller than its network takes)."""

    name: str
    filters: int
    downsampling: int
    convolutions: int
    min_image_size: int


@dataclass(frozen=True)
class ModelTable:
    """What the built network says: its layers shown, its convolutions in order and its weights' size;
    and how it wants its input."""

    layers: tuple[ConvLayer, ...]
    convolutions: tuple[Convolution, ...]
    parameters: int
    preprocessing: Preprocessing


def _no_uploads(model: str) -> ModelTable | None:
    return None


_uploaded: Callable[[str], ModelTable | None] = _no_uploads


def use_uploaded_models(lookup: Callable[[str], ModelTable | None]) -> None:
    """Have this process find uploaded models' tables with `lookup` (None where there is no such model)."""
    global _uploaded
    _uploaded = lookup


def model_table(model: str) -> ModelTable | None:
    """The table of a built-in network or an uploaded model; None where `model` names neither."""
    return model_tables().get(model) or _uploaded(model)


@cache
def model_tables() -> dict[str, ModelTable]:
    """Every architecture's table, from shared/model_tables.json."""
    raw = json.loads(TABLES.read_text())
    return {
        name: ModelTable(
            tuple(
                ConvLayer(**layer, min_image_size=max(layer["downsampling"], ARCHITECTURES[name].min_input))
                for layer in table["layers"]
            ),
            tuple(Convolution(*conv) for conv in table["convolutions"]),
            table["parameters"],
            ARCHITECTURES[name].preprocessing,
        )
        for name, table in raw.items()
    }


def conv_layers(model: str = DEFAULT_MODEL) -> tuple[ConvLayer, ...]:
    """The layers shown of `model`, input to output (none where it is unknown)."""
    table = model_table(model)
    return table.layers if table else ()


def convolutions_up_to(layer: ConvLayer, model: str = DEFAULT_MODEL) -> tuple[Convolution, ...]:
    """The convolutions `model` runs to compute `layer`, in order."""
    table = model_table(model)
    return table.convolutions[: layer.convolutions] if table else ()


def find_layer(name: str, model: str = DEFAULT_MODEL) -> ConvLayer | None:
    """The layer called `name`, or None when the model shows no such layer."""
    return next((layer for layer in conv_layers(model) if layer.name == name), None)


def is_unit(model: str, layer: str, unit: int) -> bool:
    """Whether `model` is a built-in network and shows `layer`, with a filter `unit` in it. (Units are
    rendered for anyone who asks: an upload's belong to its owners, whose jobs show them.)"""
    known = find_layer(layer, model) if model in ARCHITECTURES else None
    return known is not None and unit < known.filters


def layer_named(name: str, model: str = DEFAULT_MODEL) -> ConvLayer:
    """The layer called `name`, which must exist (a validated spec's layer); ValueError otherwise."""
    layer = find_layer(name, model)
    if layer is None:
        raise ValueError(f"unknown layer {name!r} for {model}")
    return layer


def default_layer(model: str) -> str:
    """The layer a job shows when it names none: the first at 1/16 of the input, as deep as VGG16's
    block5_conv1, where filters show whole textures and parts of objects; the last of a shallower model."""
    layers = conv_layers(model)
    return next((layer.name for layer in layers if layer.downsampling >= 16), layers[-1].name)
