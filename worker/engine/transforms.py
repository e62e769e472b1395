"""Random transforms drawn per image inside the compiled step: Lucid's pad, jitter, scale and rotate,
and MACO's crops with noise. Each image draws from its own stream (its filter's key and the step),
so what one image sees never depends on the others in its batch.
"""

import math
from dataclasses import dataclass

from keras import ops

from worker.engine.backend import Tensor
from worker.engine.backend import active as backend

PAD_GREY = 127.5  # Lucid pads with 0.5 on a 0..1 scale
FILL_MODE = "reflect"  # what a shifted, shrunk or turned image shows past its edge


def _affine_rows(matrix: Tensor, offset_x: Tensor, offset_y: Tensor) -> Tensor:
    # keras.ops.image.affine_transform's 8 numbers: output pixel (x, y) reads input
    # (a0 x + a1 y + a2, b0 x + b1 y + b2).
    zeros = ops.zeros_like(offset_x)
    return ops.stack(
        [matrix[0][0], matrix[0][1], offset_x, matrix[1][0], matrix[1][1], offset_y, zeros, zeros], axis=-1
    )


@dataclass(frozen=True)
class Affine:
    """Pad with grey, then one random shift (whole pixels), zoom and rotation per image per step."""

    pad: int = 0
    jitter: int = 0
    scale: float = 0.0
    rotate: float = 0.0
    copies: int = 1

    def apply(self, images: Tensor, keys: Tensor, step: Tensor, progress: Tensor) -> Tensor:
        if self.pad:
            p = self.pad
            images = ops.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=PAD_GREY)
        if not (self.jitter or self.scale or self.rotate):
            return images
        u = backend.uniform_per_image(keys, step, (4,))
        shift_x = ops.floor(u[:, 0] * (2 * self.jitter + 1)) - self.jitter
        shift_y = ops.floor(u[:, 1] * (2 * self.jitter + 1)) - self.jitter
        zoom = 1.0 + self.scale * (2.0 * u[:, 2] - 1.0)
        angle = math.radians(self.rotate) * (2.0 * u[:, 3] - 1.0)
        # Forward map: out = R·zoom·(in - c) + c + shift. affine_transform wants out -> in:
        # in = A (out - c - shift) + c with A = R^-1 / zoom.
        cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
        a = ((cos, sin), (-sin, cos))
        c = (images.shape[1] - 1) / 2.0
        offset_x = c - a[0][0] * (c + shift_x) - a[0][1] * (c + shift_y)
        offset_y = c - a[1][0] * (c + shift_x) - a[1][1] * (c + shift_y)
        return ops.image.affine_transform(images, _affine_rows(a, offset_x, offset_y), fill_mode=FILL_MODE)


@dataclass(frozen=True)
class Crops:
    """MACO: `copies` random crops of each image, resized to its size, with Gaussian plus uniform noise.

    The crop side moves linearly from `start` to `end` (fractions of the side) over the run; each
    crop's side is drawn around it (sd 0.05) and its centre around the middle (sd 0.15). A Fourier
    image is periodic, so a crop past an edge wraps round: no part of the image goes unseen (with
    crops kept inside, the corners were never looked at and filled with a bright blob).
    """

    copies: int = 4
    start: float = 0.7
    end: float = 0.4
    noise: float = 0.04

    def apply(self, images: Tensor, keys: Tensor, step: Tensor, progress: Tensor) -> Tensor:
        batch, size, n = ops.shape(images)[0], images.shape[1], self.copies
        draws = backend.normal_per_image(keys, step, (n, 3))
        box = self.start + (self.end - self.start) * progress
        side = ops.clip(box + 0.05 * draws[..., 2], 0.05, 1.0)
        centre_x = 0.5 + 0.15 * draws[..., 0]
        centre_y = 0.5 + 0.15 * draws[..., 1]
        last = size - 1.0
        zero = ops.zeros_like(side)
        a = ((side, zero), (zero, side))
        rows = _affine_rows(a, (centre_x - side / 2) * last, (centre_y - side / 2) * last)
        copies = ops.repeat(images, n, axis=0)
        crops = ops.image.affine_transform(copies, ops.reshape(rows, (-1, 8)), fill_mode="wrap")
        if self.noise:
            gauss = backend.normal_per_image(keys, step, (n, size, size, 3), salt=1)
            flat = backend.uniform_per_image(keys, step, (n, size, size, 3), salt=2) - 0.5
            noise = ops.reshape(gauss + flat, (batch * n, size, size, 3))
            crops = crops + self.noise * 255.0 * noise
        return crops
