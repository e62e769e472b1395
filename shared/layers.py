"""The conv layers of each model, as a static table: the API validates against it without TensorFlow."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvLayer:
    """One convolution layer: its Keras name, filter count and downsampling before it."""

    name: str
    filters: int
    # Each VGG block starts after a 2x2 max-pool, so block b sees the image shrunk by 2**(b-1).
    downsampling: int

    @property
    def min_image_size(self) -> int:
        """Smallest input side for which this layer's output is at least one pixel."""
        return self.downsampling


def _vgg16_layers() -> tuple[ConvLayer, ...]:
    blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    return tuple(
        ConvLayer(f"block{block}_conv{conv}", filters, 2 ** (block - 1))
        for block, (filters, convs) in enumerate(blocks, start=1)
        for conv in range(1, convs + 1)
    )


MODELS: dict[str, tuple[ConvLayer, ...]] = {"vgg16": _vgg16_layers()}


def conv_layers(model: str = "vgg16") -> tuple[ConvLayer, ...]:
    """The conv layers of `model`, input to output."""
    return MODELS[model]


def find_layer(name: str, model: str = "vgg16") -> ConvLayer | None:
    """The layer called `name`, or None when the model has no such conv layer."""
    return next((layer for layer in MODELS[model] if layer.name == name), None)


def layer_named(name: str, model: str = "vgg16") -> ConvLayer:
    """The layer called `name`, which must exist (a validated spec's layer); ValueError otherwise."""
    layer = find_layer(name, model)
    if layer is None:
        raise ValueError(f"unknown layer {name!r} for {model}")
    return layer
