"""What is maximised: a job's objective (shared/objectives.py), a weighted sum of terms on the layer's
activations, one value per row of the batch. Each term reads the activations before the ReLU where the
recipe says `pre_relu`, else after it."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keras import ops

from shared.objectives import CHANNEL, CLASS, DIRECTION, DIVERSITY, LAYER, NEURON
from worker.engine.backend import Tensor
from worker.engine.network import Cut, activate, channel_means, pre_activation

GRAM_EPSILON = 1e-8  # an all-zero Gram matrix (a layer dead on that picture) normalises to zero, not NaN


@dataclass(frozen=True)
class Rows:
    """Who each row of a batch of activations is: its filter, which picture it shows (a transform sees
    each picture as several crops), and how far in from the network's edges the picture lies (a pad),
    as a share of the side."""

    filters: Tensor
    pictures: Tensor
    inset: float = 0.0

    @classmethod
    def one_each(cls, filters: Tensor) -> "Rows":
        """Rows that are each a picture of their own, seen whole (no crops, no pad)."""
        return cls(filters, ops.arange(ops.shape(filters)[0]))


def _neuron(activations: Tensor, rows: Rows, term: Mapping[str, Any]) -> Tensor:
    # The nearest position to (x, y) of the picture, in the layer's output whatever its size.
    own = ops.take_along_axis(activations, ops.reshape(rows.filters, (-1, 1, 1, 1)), axis=3)
    height, width = ops.shape(own)[1], ops.shape(own)[2]
    y, x = (rows.inset + term[name] * (1 - 2 * rows.inset) for name in ("y", "x"))
    row = ops.cast(ops.round(y * ops.cast(height - 1, "float32")), "int32")
    column = ops.cast(ops.round(x * ops.cast(width - 1, "float32")), "int32")
    return ops.cast(ops.reshape(ops.take(ops.take(own, row, axis=1), column, axis=1), (-1,)), "float32")


def _layer(activations: Tensor, rows: Rows, term: Mapping[str, Any]) -> Tensor:
    return ops.mean(ops.square(ops.cast(activations, "float32")), axis=(1, 2, 3))


def _direction(activations: Tensor, rows: Rows, term: Mapping[str, Any]) -> Tensor:
    vector = ops.convert_to_tensor(term["vector"], dtype="float32")
    unit = vector / ops.sqrt(ops.sum(ops.square(vector)))
    projected = ops.tensordot(ops.cast(activations, "float32"), unit, axes=[[3], [0]])
    return ops.mean(projected, axis=(1, 2))


def _class(activations: Tensor, rows: Rows, term: Mapping[str, Any]) -> Tensor:
    # The logits layer is 1x1, a channel per class.
    logits = ops.mean(ops.cast(activations, "float32"), axis=(1, 2))
    if term["probability"]:
        logits = ops.log_softmax(logits, axis=-1)
    return logits[:, term["class"]]


def _diversity(activations: Tensor, rows: Rows, term: Mapping[str, Any]) -> Tensor:
    # Lucid's diversity: each row's Gram matrix over positions, L2-normalised; a row's value is minus its
    # mean cosine similarity with the rows of the same filter's other pictures (never its own crops).
    channels = activations.shape[-1]
    flat = ops.reshape(ops.cast(activations, "float32"), (ops.shape(activations)[0], -1, channels))
    gram = ops.reshape(ops.matmul(ops.transpose(flat, (0, 2, 1)), flat), (-1, channels * channels))
    gram = gram / (ops.sqrt(ops.sum(ops.square(gram), axis=1, keepdims=True)) + GRAM_EPSILON)
    similarity = ops.matmul(gram, ops.transpose(gram))
    same_filter = ops.equal(ops.expand_dims(rows.filters, 1), ops.expand_dims(rows.filters, 0))
    other_picture = ops.not_equal(ops.expand_dims(rows.pictures, 1), ops.expand_dims(rows.pictures, 0))
    others = ops.cast(ops.logical_and(same_filter, other_picture), "float32")
    return -ops.sum(similarity * others, axis=1) / ops.maximum(ops.sum(others, axis=1), 1.0)


TERMS: dict[str, Callable[[Tensor, Rows, Mapping[str, Any]], Tensor]] = {
    CHANNEL: lambda activations, rows, term: channel_means(activations, rows.filters),
    NEURON: _neuron,
    LAYER: _layer,
    DIRECTION: _direction,
    CLASS: _class,
    DIVERSITY: _diversity,
}


def objective_values(activations: Tensor, rows: Rows, terms: Sequence[Mapping[str, Any]]) -> Tensor:
    """Per row b, the weighted sum of the terms on its activations: shape (B,)."""
    return sum(term["weight"] * TERMS[term["kind"]](activations, rows, term) for term in terms)


def objective(cut: Cut, terms: Sequence[Mapping[str, Any]], *, pre_relu: bool) -> Callable:
    """losses(network_input, rows, relu) -> one loss per row: the objective's value."""

    def losses(x: Tensor, rows: Rows, relu: Callable) -> Tensor:
        activations = pre_activation(cut, x, relu)
        post = activations if pre_relu else activate(cut, activations, relu)
        return objective_values(post, rows, terms)

    return losses
