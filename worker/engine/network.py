"""A network up to a layer, run node by node so that its ReLUs can be swapped (for the redirected
gradient) and the layer read before its activation. Any Keras functional network (every architecture
of shared/models.py); the weights are the loaded network's own."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import keras
from keras import ops

from shared.models import Preprocessing
from worker.engine.backend import Tensor

# keras.applications' preprocess_input, written in ops so gradients pass: Caffe's BGR means, and
# torch's ImageNet mean and deviation of RGB on a 0..1 scale.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def preprocess(kind: Preprocessing, rgb: Tensor) -> Tensor:
    """RGB on a 0..255 scale to what a network of that preprocessing takes (shared/models.py)."""
    if kind == "caffe":
        return ops.flip(rgb, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")
    if kind == "tf":
        return rgb / 127.5 - 1.0
    if kind == "torch":
        mean, std = (ops.convert_to_tensor(v, dtype="float32") for v in (TORCH_MEAN_RGB, TORCH_STD_RGB))
        return (rgb / 255.0 - mean) / std
    return rgb


@dataclass(frozen=True)
class Cut:
    """A network from its input to what `target` takes in, and the target layer."""

    before: keras.Model
    target: keras.layers.Layer

    @property
    def ends_in_relu(self) -> bool:
        """Whether the target's output is a plain ReLU of something: what `pre_relu` reads before."""
        return _is_relu(self.target) or _has_fused_relu(self.target)


def cut_at(network: keras.Model, layer_name: str) -> Cut:
    """`network` up to its layer `layer_name` (ValueError where it has none)."""
    try:
        target = network.get_layer(layer_name)
    except ValueError:
        raise ValueError(f"no layer {layer_name!r} in {network.name}") from None
    return Cut(up_to(network, target.input), target)


def up_to(network: keras.Model, tensor: Any) -> keras.Model:
    """`network` from its input to `tensor`, for images of any side. A network saved for one input
    size (an uploaded model's) is called again on a free-sized input with the same layers: pictures
    are rendered at any size, and the methods' transforms change it."""
    cut = keras.Model(network.input, tensor)
    if cut.input.shape[1:3] == (None, None):
        return cut
    free = keras.Input((None, None, cut.input.shape[-1]))
    return keras.models.clone_model(cut, input_tensors=free, clone_function=lambda layer: layer)


def _is_relu(operation: Any) -> bool:
    if isinstance(operation, keras.layers.ReLU):
        return operation.max_value is None and not operation.negative_slope and not operation.threshold
    return isinstance(operation, keras.layers.Activation) and operation.activation is keras.activations.relu


def _has_fused_relu(operation: Any) -> bool:
    # VGG's convolutions apply their ReLU themselves.
    return isinstance(operation, keras.layers.Conv2D) and operation.activation is keras.activations.relu


def _linear(conv: keras.layers.Conv2D, x: Tensor) -> Tensor:
    # The layer's compute dtype (bfloat16 under a mixed policy); its variables are kept in float32.
    dtype = conv.compute_dtype
    out = conv.convolution_op(ops.cast(x, dtype), ops.cast(conv.kernel, dtype))
    return out + ops.cast(conv.bias, dtype) if conv.use_bias else out


def _swapped(operation: Any, relu: Callable[[Tensor], Tensor]) -> Callable:
    """What runs in place of one node: `relu` for each plain ReLU, inference mode for the layers."""
    if _is_relu(operation):
        return relu
    if _has_fused_relu(operation):
        return lambda x: relu(_linear(operation, x))
    if isinstance(operation, keras.layers.Layer):
        return partial(operation, training=False)
    return operation  # an op of the functional graph (ConvNeXt's residual add)


def pre_activation(cut: Cut, x: Tensor, relu: Callable[[Tensor], Tensor]) -> Tensor:
    """The target's output before its ReLU (its output, where it ends in none), with `relu` for every
    ReLU on the way, computed in the network's compute dtype (the gradient reaching `x` is in x's own)."""
    x = ops.cast(x, cut.target.compute_dtype)
    # How Keras' own Functional.call runs a graph, with an operation of ours where we want one (the
    # method is private: every architecture's test runs through here).
    taken = cut.before._run_through_graph(x, operation_fn=lambda operation: _swapped(operation, relu))
    if _is_relu(cut.target):
        return taken
    if _has_fused_relu(cut.target):
        return _linear(cut.target, taken)
    return cut.target(taken, training=False)


def activate(cut: Cut, pre: Tensor, relu: Callable[[Tensor], Tensor]) -> Tensor:
    """The target's output from `pre_activation`'s."""
    return relu(pre) if cut.ends_in_relu else pre


def channel_means(activations: Tensor, filters: Tensor) -> Tensor:
    """Per image b, the mean over space of channel filters[b]: shape (B,)."""
    own = ops.take_along_axis(activations, ops.reshape(filters, (-1, 1, 1, 1)), axis=3)
    return ops.mean(ops.cast(own, "float32"), axis=(1, 2, 3))
