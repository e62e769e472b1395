"""How a step moves the variable: the seed's RMS-normalised ascent, Adam or NAdam.

All work element by element (or per image, for the RMS), so images never interact. The scalar
coefficients of step t (learning rate, bias corrections, NAdam's momentum schedule) are computed
on the host and passed in, so one compiled step serves every t. Every optimiser ascends.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops

from worker.engine.backend import GRADIENT_EPSILON, Tensor


def _per_image_axes(x: Tensor) -> tuple[int, ...]:
    return tuple(range(1, len(x.shape)))


@dataclass(frozen=True)
class NormalisedAscent:
    """The seed's step: the gradient divided by its own RMS (per image), times the step size."""

    def init_state(self, variable: Tensor) -> tuple:
        return ()

    def coefficients(self, t: int, learning_rate: float) -> np.ndarray:
        return np.array([learning_rate], np.float32)

    def update(self, variable: Tensor, grad: Tensor, state: tuple, coefficients: Tensor) -> tuple[Tensor, tuple]:
        rms = ops.sqrt(ops.mean(ops.square(grad), axis=_per_image_axes(grad), keepdims=True)) + GRADIENT_EPSILON
        return variable + coefficients[0] * grad / rms, state


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma and Ba) with Keras' defaults."""

    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def init_state(self, variable: Tensor) -> tuple:
        return (ops.zeros_like(variable), ops.zeros_like(variable))

    def moments(self, grad: Tensor, state: tuple) -> tuple[Tensor, Tensor]:
        """The running means of the gradient and of its square, after this step."""
        m, v = state
        return m + (grad - m) * (1 - self.beta_1), v + (ops.square(grad) - v) * (1 - self.beta_2)

    def coefficients(self, t: int, learning_rate: float) -> np.ndarray:
        # Bias corrections folded into the rate, as Keras does.
        rate = learning_rate * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        return np.array([rate], np.float32)

    def update(self, variable: Tensor, grad: Tensor, state: tuple, coefficients: Tensor) -> tuple[Tensor, tuple]:
        m, v = self.moments(grad, state)
        return variable + coefficients[0] * m / (ops.sqrt(v) + self.epsilon), (m, v)


@dataclass(frozen=True)
class NAdam(Adam):
    """NAdam (Dozat) with Keras' momentum schedule and defaults: Adam's moments, Nesterov's look-ahead."""

    def _momentum(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def coefficients(self, t: int, learning_rate: float) -> np.ndarray:
        u_t, u_next = self._momentum(t), self._momentum(t + 1)
        product = float(np.prod([self._momentum(i) for i in range(1, t + 1)]))
        # var += lr * (c_m * m + c_g * g) / (sqrt(v / (1 - beta_2^t)) + eps)
        c_m = u_next / (1 - product * u_next)
        c_g = (1 - u_t) / (1 - product)
        return np.array([learning_rate, c_m, c_g, 1 - self.beta_2**t], np.float32)

    def update(self, variable: Tensor, grad: Tensor, state: tuple, coefficients: Tensor) -> tuple[Tensor, tuple]:
        m, v = self.moments(grad, state)
        m_hat = coefficients[1] * m + coefficients[2] * grad
        v_hat = v / coefficients[3]
        return variable + coefficients[0] * m_hat / (ops.sqrt(v_hat) + self.epsilon), (m, v)
