"""How an image is parameterised: pixels, a 1/f-scaled Fourier spectrum, or a phase under a fixed magnitude.

Each turns its per-image variable into RGB on a 0..255 scale. Every operation works per image, so
images in a batch never interact.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops

from worker.engine.backend import Tensor
from worker.engine.backend import active as backend
from worker.engine.core import filter_rng
from worker.engine.seed import start_image

# Lucid's colour decorrelation (param/color.py): the square root of ImageNet's colour correlation,
# normalised by its largest column norm.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_DECORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
FOURIER_MAGIC_DIVISOR = 4.0  # Lucid's "magic constant" after the inverse FFT
STANDARDISE_EPSILON = 1e-4  # Horama's


def frequencies(size: int) -> np.ndarray:
    """Radial frequency, in cycles per pixel, of each bin of a size x size real FFT: (size, size//2+1)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    return np.sqrt(fx**2 + fy**2)


def one_over_f(size: int, power: float) -> np.ndarray:
    """1 / max(f, 1/size)^power: the DC bin is clamped to the lowest frequency (as Lucid does)."""
    return (1.0 / np.maximum(frequencies(size), 1.0 / size) ** power).astype(np.float32)


def _recolour_sigmoid(channels_first: Tensor) -> Tensor:
    # (B, 3, H, W) decorrelated channels -> RGB on 0..255 through Lucid's colour matrix and a sigmoid.
    image = ops.transpose(channels_first, (0, 2, 3, 1))
    rgb = ops.matmul(image, ops.convert_to_tensor(COLOR_DECORRELATION.T))
    return ops.sigmoid(rgb) * 255.0


@dataclass(frozen=True)
class Pixels:
    """The image is the variable (as the seed): RGB values, starting from the seed's grey noise."""

    def init(self, seed: int, filter_index: int, size: int) -> np.ndarray:
        return start_image(seed, filter_index, size)

    def rgb(self, variable: Tensor) -> Tensor:
        return variable

    def resize(self, variable: Tensor, size: int) -> Tensor:
        """Bicubic resize of the float image (no uint8 round trip), for multi-scale octaves."""
        return ops.image.resize(variable, (size, size), interpolation="bicubic")


@dataclass(frozen=True)
class Fourier:
    """Lucid's fft_image: real and imaginary spectrum scaled by 1/f^decay_power, decorrelated colour, sigmoid."""

    decay_power: float = 1.0
    init_sd: float = 0.01

    def init(self, seed: int, filter_index: int, size: int) -> np.ndarray:
        shape = (2, 3, size, size // 2 + 1)
        return (filter_rng(seed, filter_index).standard_normal(shape) * self.init_sd).astype(np.float32)

    def rgb(self, variable: Tensor) -> Tensor:
        size = variable.shape[3]
        # sqrt(h*w) makes the transform unitary, so learning rates are like pixel-wise ones (Lucid).
        scale = ops.convert_to_tensor(one_over_f(size, self.decay_power) * size)
        channels = backend.irfft2d(variable[:, 0] * scale, variable[:, 1] * scale, size) / FOURIER_MAGIC_DIVISOR
        return _recolour_sigmoid(channels)

    def resize(self, variable: Tensor, size: int) -> Tensor:
        raise NotImplementedError("a Fourier image keeps its size")


@dataclass(frozen=True)
class Phase:
    """MACO: only the phase is a variable; the magnitude is a fixed 1/f^slope template. The image is
    standardised, then recoloured and squashed as Lucid's."""

    magnitude_slope: float = 1.3

    def init(self, seed: int, filter_index: int, size: int) -> np.ndarray:
        # Uniform on the circle: a phase drawn N(0, 1) (and standardised so each step) is concentrated
        # near 0, so every frequency peaks together at the origin, a bright blob in the corners.
        shape = (3, size, size // 2 + 1)
        return filter_rng(seed, filter_index).uniform(-np.pi, np.pi, shape).astype(np.float32)

    def rgb(self, variable: Tensor) -> Tensor:
        size = variable.shape[2]
        phase = variable
        magnitude = ops.convert_to_tensor(one_over_f(size, self.magnitude_slope))
        channels = backend.irfft2d(magnitude * ops.cos(phase), magnitude * ops.sin(phase), size)
        return _recolour_sigmoid(_standardise(channels))

    def resize(self, variable: Tensor, size: int) -> Tensor:
        raise NotImplementedError("a phase image keeps its size")


def _standardise(x: Tensor) -> Tensor:
    # Per image: mean 0, standard deviation 1 over all its other axes.
    axes = tuple(range(1, len(x.shape)))
    mean = ops.mean(x, axis=axes, keepdims=True)
    std = ops.std(x, axis=axes, keepdims=True)
    return (x - mean) / (std + STANDARDISE_EPSILON)
