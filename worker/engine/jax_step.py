"""Everything JAX-specific in the engine, the sibling of tf_step with the same functions: compiled
(jit) gradient steps, the redirected ReLU, per-image random draws and the inverse real FFT.

The random draws use JAX's own generator, so a method with random transforms paints other (equally
valid) pictures than on TensorFlow; `seed` draws nothing inside the step and agrees across backends.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import keras

from worker.engine.backend import GRADIENT_EPSILON

# A jitted step compiles once per input shape: `seed` keeps its batch whole and masks dead filters
# instead of shrinking it (TensorFlow's step takes any batch size without retracing).
RECOMPILES_PER_SHAPE = True


def seed_step(cut: keras.Model, image_size: int) -> Callable:
    """Method `seed`'s compiled step: each image moves along its own RMS-normalised gradient."""

    def total_loss(images: jax.Array, filters: jax.Array) -> tuple[jax.Array, jax.Array]:
        activations = cut(images, training=False)
        own_channel = jnp.take_along_axis(activations, filters[:, None, None, None], axis=3)
        losses = jnp.mean(own_channel.astype(jnp.float32), axis=(1, 2, 3))
        # Image b only influences loss b, so the gradient of the sum is each image's own gradient.
        return jnp.sum(losses), losses

    @jax.jit
    def step(images: jax.Array, filters: jax.Array, step_size: jax.Array) -> tuple[jax.Array, jax.Array]:
        grads, losses = jax.grad(total_loss, has_aux=True)(images, filters)
        rms = jnp.sqrt(jnp.mean(jnp.square(grads), axis=(1, 2, 3), keepdims=True)) + GRADIENT_EPSILON
        return images + step_size * grads / rms, losses

    return step


def recipe_step(losses_of: Callable[..., Any], update: Callable[..., Any]) -> Callable:
    """A compiled step of any recipe: per-image losses of the variable, their gradient, one update
    (see tf_step.recipe_step)."""

    def total_loss(variable, *inputs):
        losses = losses_of(variable, *inputs)
        return jnp.sum(losses), losses

    @jax.jit
    def step(variable, state, coefficients, *inputs):
        grad, losses = jax.grad(total_loss, has_aux=True)(variable, *inputs)
        variable, state = update(variable, grad, state, coefficients)
        return variable, state, losses

    return step


def compiled(function: Callable) -> Callable:
    """A compiled function without a gradient (evaluation)."""
    return jax.jit(function)


@jax.custom_vjp
def _relu(x: jax.Array, redirect: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


def _relu_forward(x: jax.Array, redirect: jax.Array) -> tuple[jax.Array, tuple]:
    return jnp.maximum(x, 0), (x, redirect)


def _relu_backward(saved: tuple, upstream: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, redirect = saved
    zero = jnp.zeros_like(upstream)
    plain = jnp.where(x > 0, upstream, zero)
    # We ascend: the gradient that raises x is the positive one.
    redirected = jnp.where((x <= 0) & (upstream < 0), zero, upstream)
    blocked = jnp.all(plain == 0, axis=tuple(range(1, x.ndim)), keepdims=True)
    return jnp.where((redirect > 0) & blocked, redirected, plain), jnp.zeros_like(redirect)


_relu.defvjp(_relu_forward, _relu_backward)


def redirectable_relu(redirect: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """ReLU whose gradient, while `redirect` is true, is Lucid's redirected ReLU gradient (see tf_step)."""
    flag = jnp.asarray(redirect, jnp.float32)  # a float, so its (zero) cotangent is an ordinary array
    return lambda x: _relu(x, flag)


def _per_image(keys: jax.Array, step: jax.Array, draw: Callable[[jax.Array], jax.Array]) -> jax.Array:
    # One stream per image, keyed on (the image's filter key, step): the same draws whatever else is in the batch.
    def one(key: jax.Array) -> jax.Array:
        return draw(jax.random.fold_in(jax.random.wrap_key_data(key.astype(jnp.uint32)), step))

    return jax.vmap(one)(keys)


def uniform_per_image(keys: jax.Array, step: jax.Array, shape: Sequence[int], salt: int = 0) -> jax.Array:
    """U[0, 1) of `shape` for each image, shape (B, *shape)."""
    return _per_image(keys, step * 4 + salt, lambda key: jax.random.uniform(key, tuple(shape)))


def normal_per_image(keys: jax.Array, step: jax.Array, shape: Sequence[int], salt: int = 0) -> jax.Array:
    """N(0, 1) of `shape` for each image, shape (B, *shape)."""
    return _per_image(keys, step * 4 + salt, lambda key: jax.random.normal(key, tuple(shape)))


def irfft2d(real: jax.Array, imag: jax.Array, size: int) -> jax.Array:
    """Inverse real 2-D FFT over the last two axes, to size x size."""
    return jnp.fft.irfft2(real + 1j * imag, s=(size, size), axes=(-2, -1)).astype(jnp.float32)
