"""Gradient ascent in input space, many filters at once: method `seed` of SPEC.md.

Each filter gets its own image in the batch. Its loss is the mean of its channel of the layer's
output, and its gradient is normalised by its own RMS, so a batched run paints the same pictures
as one filter at a time. The engine knows nothing of Celery, Redis or storage.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from shared.layers import ConvLayer, conv_layers, find_layer

GRADIENT_EPSILON = 1e-7  # keras.backend.epsilon(), as the seed uses
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class FilterAscent:
    """One filter's outcome: its raw image, the loss at its last step, whether it died, steps it ran."""

    index: int
    image: np.ndarray  # float32, image_size x image_size x 3, raw pixel values
    loss: float
    dead: bool
    steps_run: int


def start_image(seed: int, filter_index: int, image_size: int) -> np.ndarray:
    """The seed's starting noise, (rand - 0.5) * 20 + 128, drawn from (seed, filter) alone.

    Keying the noise on the filter makes a filter's picture independent of which batch or
    chunk it runs in.
    """
    rng = np.random.default_rng([seed, filter_index])
    return ((rng.random((image_size, image_size, 3)) - 0.5) * 20 + 128).astype(np.float32)


class AscentEngine:
    """Runs the ascent on one loaded network; compiled steps are cached per (layer, image size)."""

    def __init__(self, network: keras.Model) -> None:
        self._network = network
        self._steps: dict[tuple[str, int], Callable] = {}

    def compiled_step(self, layer: str, image_size: int) -> Callable:
        """The compiled ascent step for a layer and image size (any batch size), built on first use."""
        key = (layer, image_size)
        if key not in self._steps:
            cut = keras.Model(self._network.input, self._network.get_layer(layer).output)
            self._steps[key] = _build_step(cut, image_size)
        return self._steps[key]

    def ascend(
        self,
        layer: str,
        filters: Sequence[int],
        *,
        image_size: int,
        steps: int,
        step_size: float,
        seed: int,
        batch_size: int,
        on_batch: Callable[[list[FilterAscent]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[FilterAscent]:
        """Ascend every filter in `filters`, `batch_size` at a time, in the given order.

        `on_batch` hears each finished batch (for progress); `should_stop` is asked between
        batches and ends the run early when it returns True (for cancellation).
        """
        step = self.compiled_step(layer, image_size)
        results: list[FilterAscent] = []
        for begin in range(0, len(filters), batch_size):
            if should_stop is not None and should_stop():
                break
            batch = list(filters[begin : begin + batch_size])
            images = np.stack([start_image(seed, k, image_size) for k in batch])
            finished = _ascend_batch(step, images, batch, steps, step_size)
            results.extend(finished)
            if on_batch is not None:
                on_batch(finished)
        return results


def _build_step(cut: keras.Model, image_size: int) -> Callable:
    images_spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    filters_spec = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[images_spec, filters_spec, tf.TensorSpec([], tf.float32)])
    def step(images: tf.Tensor, filters: tf.Tensor, step_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Only the input is watched: no gradients are computed for the weights.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            activations = cut(images, training=False)
            own_channel = tf.gather(activations, filters, axis=3, batch_dims=1)
            losses = tf.reduce_mean(own_channel, axis=[1, 2])
            # Image b only influences loss b, so the gradient of the sum is each image's own gradient.
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, images)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=[1, 2, 3], keepdims=True)) + GRADIENT_EPSILON
        return images + step_size * grads / rms, losses

    return step


def _ascend_batch(
    step: Callable, images: np.ndarray, filters: list[int], steps: int, step_size: float
) -> list[FilterAscent]:
    count = len(filters)
    current = tf.constant(images)
    filter_ids = tf.constant(filters, dtype=tf.int32)
    last_loss = np.zeros(count, dtype=np.float64)
    dead = np.zeros(count, dtype=bool)
    steps_run = np.zeros(count, dtype=int)
    active = np.arange(count)
    step_size_t = tf.constant(step_size, dtype=tf.float32)
    for _ in range(steps):
        if active.size == count:
            current, losses = step(current, filter_ids, step_size_t)
        else:
            # Dead filters stop: only the live images are computed and updated.
            index = tf.constant(active[:, None], dtype=tf.int32)
            moved, losses = step(tf.gather_nd(current, index), tf.gather_nd(filter_ids, index), step_size_t)
            current = tf.tensor_scatter_nd_update(current, index, moved)
        losses = losses.numpy()
        last_loss[active] = losses
        steps_run[active] += 1
        # As in the seed, the step that finds loss <= 0 is still applied, then the filter stops.
        died = losses <= 0
        dead[active[died]] = True
        active = active[~died]
        if active.size == 0:
            break
    final = current.numpy()
    return [
        FilterAscent(k, final[i], float(last_loss[i]), bool(dead[i]), int(steps_run[i])) for i, k in enumerate(filters)
    ]


def activation_bytes_per_image(layer: ConvLayer, image_size: int, model: str = "vgg16") -> int:
    """Rough memory one image needs in a step: each conv output up to `layer`, kept for the backward
    pass plus its gradient and the ReLU mask (about three copies)."""
    total = image_size * image_size * 3
    for conv in conv_layers(model):
        side = max(1, image_size // conv.downsampling)
        total += side * side * conv.filters
        if conv.name == layer.name:
            break
    return 3 * total * BYTES_PER_FLOAT


def auto_batch_size(layer_name: str, image_size: int, filter_count: int, memory_budget_mb: int) -> int:
    """The largest batch whose activations fit the memory budget, but no more than the filters asked for."""
    layer = find_layer(layer_name)
    if layer is None:
        raise ValueError(f"unknown layer {layer_name!r}")
    per_image = activation_bytes_per_image(layer, image_size)
    fits = max(1, (memory_budget_mb * 2**20) // per_image)
    return int(min(fits, filter_count))
