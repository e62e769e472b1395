"""VGG16 up to a conv layer, written out as ops so its ReLUs can be swapped (for the redirected
gradient) and the target layer read before its ReLU. The weights are the loaded network's own."""

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import ops

from worker.engine.backend import Tensor

# Caffe preprocessing of keras.applications.vgg16.preprocess_input, written in ops so gradients pass.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Stack:
    """The layers before the target (convs and pools, in order) and the target conv."""

    before: tuple[keras.layers.Layer, ...]
    target: keras.layers.Conv2D


def layer_stack(network: keras.Model, layer_name: str) -> Stack:
    """The conv and pooling layers of `network` up to `layer_name`."""
    before: list[keras.layers.Layer] = []
    for layer in network.layers:
        if layer.name == layer_name:
            return Stack(tuple(before), layer)
        if isinstance(layer, keras.layers.Conv2D | keras.layers.MaxPooling2D):
            before.append(layer)
    raise ValueError(f"no layer {layer_name!r} in {network.name}")


def caffe_preprocess(rgb: Tensor) -> Tensor:
    """RGB on a 0..255 scale to VGG16's input: BGR with the ImageNet mean removed."""
    return ops.flip(rgb, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")


def _conv(layer: keras.layers.Conv2D, x: Tensor) -> Tensor:
    # The layer's compute dtype (bfloat16 under a mixed policy); its variables are kept in float32.
    dtype = layer.compute_dtype
    return ops.conv(x, ops.cast(layer.kernel, dtype), strides=1, padding="same") + ops.cast(layer.bias, dtype)


def pre_activation(stack: Stack, x: Tensor, relu: Callable[[Tensor], Tensor]) -> Tensor:
    """The target conv's output before its ReLU, with `relu` for every ReLU on the way, computed in
    the network's compute dtype (the gradient reaching `x` is in x's own dtype)."""
    x = ops.cast(x, stack.target.compute_dtype)
    for layer in stack.before:
        if isinstance(layer, keras.layers.MaxPooling2D):
            x = ops.max_pool(x, pool_size=2, strides=2, padding="valid")
        else:
            x = relu(_conv(layer, x))
    return _conv(stack.target, x)


def channel_means(activations: Tensor, filters: Tensor) -> Tensor:
    """Per image b, the mean over space of channel filters[b]: shape (B,)."""
    own = ops.take_along_axis(activations, ops.reshape(filters, (-1, 1, 1, 1)), axis=3)
    return ops.mean(ops.cast(own, "float32"), axis=(1, 2, 3))
