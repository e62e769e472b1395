"""Everything TensorFlow-specific in the engine: compiled gradient steps, the redirected ReLU,
per-image random draws and the inverse real FFT. The other modules use keras.ops only; jax_step
is this module's sibling for JAX, with the same functions.
"""

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from worker.engine.backend import GRADIENT_EPSILON

# The seed step's input signature takes any batch size without retracing, so `seed` may shrink its
# batch as filters die (jax_step's jitted step would compile again for every new size).
RECOMPILES_PER_SHAPE = False


def seed_step(cut: keras.Model, image_size: int) -> Callable:
    """Method `seed`'s compiled step: each image moves along its own RMS-normalised gradient."""
    images_spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    filters_spec = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[images_spec, filters_spec, tf.TensorSpec([], tf.float32)])
    def step(images: tf.Tensor, filters: tf.Tensor, step_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Only the input is watched: no gradients are computed for the weights.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            activations = cut(images, training=False)
            own_channel = tf.gather(activations, filters, axis=3, batch_dims=1)
            # In float32 whatever precision the network computes in (a no-op in float32).
            losses = tf.reduce_mean(tf.cast(own_channel, tf.float32), axis=[1, 2])
            # Image b only influences loss b, so the gradient of the sum is each image's own gradient.
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, images)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=[1, 2, 3], keepdims=True)) + GRADIENT_EPSILON
        return images + step_size * grads / rms, losses

    return step


def recipe_step(losses_of: Callable[..., Any], update: Callable[..., Any]) -> Callable:
    """A compiled step of any recipe: per-image losses of the variable, their gradient, one update.

    `losses_of(variable, *inputs)` returns one loss per image; `update(variable, grad, state, coefficients)`
    returns the new variable and optimiser state. Images never interact, so the gradient of the sum
    is each image's own gradient.
    """

    @tf.function(autograph=False)
    def step(variable, state, coefficients, *inputs):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variable)
            losses = losses_of(variable, *inputs)
            total = tf.reduce_sum(losses)
        grad = tape.gradient(total, variable)
        variable, state = update(variable, grad, state, coefficients)
        return variable, state, losses

    return step


def compiled(function: Callable) -> Callable:
    """A compiled function without a gradient (evaluation)."""
    return tf.function(function, autograph=False)


def redirectable_relu(redirect: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
    """ReLU whose gradient, while `redirect` is true, is Lucid's redirected ReLU gradient.

    For an image whose whole ReLU gradient is zero (the unit blocks everything), the gradient
    that would raise a negative input is let through, so a dead filter can start to move.
    Otherwise (and once `redirect` is false) it is the plain ReLU gradient.
    """

    @tf.custom_gradient
    def relu(x: tf.Tensor):
        def grad(upstream: tf.Tensor) -> tf.Tensor:
            plain = tf.where(x > 0, upstream, tf.zeros_like(upstream))
            # We ascend: the gradient that raises x is the positive one.
            redirected = tf.where((x <= 0) & (upstream < 0), tf.zeros_like(upstream), upstream)
            blocked = tf.reduce_all(tf.equal(plain, 0), axis=tf.range(1, tf.rank(x)), keepdims=True)
            return tf.where(redirect & blocked, redirected, plain)

        return tf.nn.relu(x), grad

    return relu


def _per_image(keys: tf.Tensor, step: tf.Tensor, draw: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    # One stateless stream per image, keyed on (the image's filter key, step): the same draws
    # whatever else is in the batch.
    def one(key: tf.Tensor) -> tf.Tensor:
        return draw(tf.random.experimental.stateless_fold_in(key, step))

    return tf.map_fn(one, keys, fn_output_signature=tf.float32)


def uniform_per_image(keys: tf.Tensor, step: tf.Tensor, shape: Sequence[int], salt: int = 0) -> tf.Tensor:
    """U[0, 1) of `shape` for each image, shape (B, *shape)."""
    return _per_image(keys, step * 4 + salt, lambda key: tf.random.stateless_uniform(shape, seed=key))


def normal_per_image(keys: tf.Tensor, step: tf.Tensor, shape: Sequence[int], salt: int = 0) -> tf.Tensor:
    """N(0, 1) of `shape` for each image, shape (B, *shape)."""
    return _per_image(keys, step * 4 + salt, lambda key: tf.random.stateless_normal(shape, seed=key))


def irfft2d(real: tf.Tensor, imag: tf.Tensor, size: int) -> tf.Tensor:
    """Inverse real 2-D FFT over the last two axes, to size x size."""
    return tf.signal.irfft2d(tf.complex(real, imag), fft_length=[size, size])
