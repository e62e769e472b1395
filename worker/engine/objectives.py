"""What is maximised: a job's objective (shared/objectives.py), a weighted sum of terms on the layer's
activations, one value per image. Each term reads the activations before the ReLU where the recipe
says `pre_relu`, else after it."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keras import ops

from shared.objectives import CHANNEL, DIRECTION, LAYER, NEURON
from worker.engine.backend import Tensor
from worker.engine.network import Cut, activate, channel_means, pre_activation


def _neuron(activations: Tensor, filters: Tensor, term: Mapping[str, Any], inset: float) -> Tensor:
    # The nearest position to (x, y) of the picture, in the layer's output whatever its size; the
    # picture lies `inset` in from each edge of what the network sees (a recipe's grey pad).
    own = ops.take_along_axis(activations, ops.reshape(filters, (-1, 1, 1, 1)), axis=3)
    height, width = ops.shape(own)[1], ops.shape(own)[2]
    y, x = (inset + term[name] * (1 - 2 * inset) for name in ("y", "x"))
    row = ops.cast(ops.round(y * ops.cast(height - 1, "float32")), "int32")
    column = ops.cast(ops.round(x * ops.cast(width - 1, "float32")), "int32")
    return ops.cast(ops.reshape(ops.take(ops.take(own, row, axis=1), column, axis=1), (-1,)), "float32")


def _layer(activations: Tensor, filters: Tensor, term: Mapping[str, Any], inset: float) -> Tensor:
    return ops.mean(ops.square(ops.cast(activations, "float32")), axis=(1, 2, 3))


def _direction(activations: Tensor, filters: Tensor, term: Mapping[str, Any], inset: float) -> Tensor:
    vector = ops.convert_to_tensor(term["vector"], dtype="float32")
    unit = vector / ops.sqrt(ops.sum(ops.square(vector)))
    projected = ops.tensordot(ops.cast(activations, "float32"), unit, axes=[[3], [0]])
    return ops.mean(projected, axis=(1, 2))


TERMS: dict[str, Callable[[Tensor, Tensor, Mapping[str, Any], float], Tensor]] = {
    CHANNEL: lambda activations, filters, term, inset: channel_means(activations, filters),
    NEURON: _neuron,
    LAYER: _layer,
    DIRECTION: _direction,
}


def objective_values(
    activations: Tensor, filters: Tensor, terms: Sequence[Mapping[str, Any]], inset: float = 0.0
) -> Tensor:
    """Per image b, the weighted sum of the terms on its activations (filter filters[b]): shape (B,).
    `inset`: the share of each side of the network's input that is not the picture (a pad)."""
    return sum(term["weight"] * TERMS[term["kind"]](activations, filters, term, inset) for term in terms)


def objective(cut: Cut, terms: Sequence[Mapping[str, Any]], *, pre_relu: bool) -> Callable:
    """losses(network_input, filters, relu, inset) -> one loss per image: the objective's value."""

    def losses(x: Tensor, filters: Tensor, relu: Callable, inset: float = 0.0) -> Tensor:
        activations = pre_activation(cut, x, relu)
        post = activations if pre_relu else activate(cut, activations, relu)
        return objective_values(post, filters, terms, inset)

    return losses
