"""Building each network of shared/models.py with Keras, and the table the API reads in its place.

`python -m worker.architectures` rebuilds shared/model_tables.json from the networks themselves: the
layers a picture is shown for (with their channels and downsampling), every convolution in order (what
the cost model counts) and the parameter count without the top (what an uploaded file holds; about what a
loaded network weighs).
"""

import json
import math
import sys
from typing import Any

import keras

from shared.layers import convolution_macs
from shared.models import ARCHITECTURES, IMAGENET_CLASSES, LOGITS, TABLES, Architecture, shown

# The side the tables are measured at: a power of two, so each output side gives its stride exactly.
MEASURED_SIDE = 256


def build(architecture: Architecture, side: int | None = None, *, classifier: bool = True) -> keras.Model:
    """The network without weights, for inputs of any side (or of `side`): without its top, or, where the
    architecture carries its classifier (and `classifier`), ending in LOGITS: Keras' own top (global
    average pooling, then the dense layer `predictions`) with no softmax, so its weights files load."""
    constructor = getattr(keras.applications, architecture.keras_name)
    body = constructor(include_top=False, weights=None, input_shape=(side, side, 3))
    if not (architecture.classifier and classifier):
        return body
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(body.output)
    logits = keras.layers.Dense(IMAGENET_CLASSES, name="predictions")(pooled)
    return keras.Model(body.input, keras.layers.Reshape((1, 1, IMAGENET_CLASSES), name=LOGITS)(logits), name=body.name)


def _macs_per_pixel(layer: keras.layers.Layer, channels_in: int) -> int | None:
    """Multiply-adds per output pixel of a convolution (None for any other layer)."""
    if isinstance(layer, keras.layers.Dense):  # a 1x1 convolution, applied to every pixel (ConvNeXt)
        return channels_in * layer.units
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)):
        return None
    kind, multiplier = type(layer).__name__, getattr(layer, "depth_multiplier", 1)
    channels = channels_in * multiplier if kind == "DepthwiseConv2D" else layer.filters
    return convolution_macs(kind, math.prod(layer.kernel_size), channels_in, channels, multiplier,
                            getattr(layer, "groups", 1))  # fmt: skip


def _downsampling(shape: Any) -> int:
    return 2 ** round(math.log2(MEASURED_SIDE / max(1, shape[1])))


def table(architecture: Architecture) -> dict[str, Any]:
    """The architecture's layers shown, its convolutions and its parameter count."""
    network = build(architecture, MEASURED_SIDE)
    layers, convolutions = [], []
    for layer in network._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.InputLayer) or len(layer.output.shape) != 4:
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        macs = _macs_per_pixel(layer, inputs[0].shape[-1])
        if macs is not None:
            convolutions.append((_downsampling(layer.output.shape), macs, layer.output.shape[-1]))
        if shown(architecture, layer.name):
            channels = int(layer.output.shape[-1])
            # The logits are 1x1 at any side: they need what the last convolution needs.
            downsampling = convolutions[-1][0] if layer.name == LOGITS else _downsampling(layer.output.shape)
            layers.append({"name": layer.name, "filters": channels, "downsampling": downsampling,
                           "convolutions": len(convolutions)})  # fmt: skip
    # What a weights file without the top holds (an upload's size is checked against it).
    without_top = build(architecture, MEASURED_SIDE, classifier=False)
    return {"layers": layers, "convolutions": convolutions, "parameters": without_top.count_params()}


def tables() -> dict[str, Any]:
    """Every architecture's table, as shared/model_tables.json holds them."""
    return {name: table(architecture) for name, architecture in ARCHITECTURES.items()}


def main() -> int:
    TABLES.write_text(json.dumps(tables(), indent=1) + "\n")
    print(f"wrote {TABLES}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
