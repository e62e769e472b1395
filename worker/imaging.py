"""From raw ascent images to pictures: deprocess, choose and stitch the grid, encode PNG."""

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.spec import grid_side

DEPROCESS_EPSILON = 1e-7
SEED_CONTRAST = 0.1  # the seed's deprocess std


@dataclass(frozen=True)
class FilterOutcome:
    """What the grid needs to know about one filter."""

    index: int
    loss: float
    dead: bool


def deprocess(image: np.ndarray, contrast: float = SEED_CONTRAST) -> np.ndarray:
    """The seed's deprocess: centre, scale to std `contrast` (the seed's 0.1), shift to 0.5, clip to [0, 1],
    to uint8 (truncating)."""
    x = image.astype(np.float64)
    x = (x - x.mean()) / (x.std() + DEPROCESS_EPSILON)
    x = np.clip(x * contrast + 0.5, 0, 1) * 255
    return x.astype(np.uint8)


def to_picture(image: np.ndarray) -> np.ndarray:
    """An image already on a 0..255 scale (a sigmoid's output) as uint8, rounded."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def grid_order(outcomes: Sequence[FilterOutcome], n: int) -> list[int]:
    """Filter indices for the grid: live filters by final loss, best first (ties by index), at most n*n."""
    alive = [o for o in outcomes if not o.dead]
    ranked = sorted(alive, key=lambda o: (-o.loss, o.index))
    return [o.index for o in ranked[: n * n]]


def stitch_grid(
    order: Sequence[int], pictures: Mapping[int, np.ndarray], *, n: int, image_size: int, margin: int
) -> np.ndarray:
    """Place pictures[order[i]] row-major on a black n x n grid; cells past len(order) stay black."""
    size = image_size
    side = grid_side(n, size, margin)
    grid = np.zeros((side, side, 3), dtype=np.uint8)
    for cell, index in enumerate(order):
        row, col = divmod(cell, n)
        top, left = row * (size + margin), col * (size + margin)
        grid[top : top + size, left : left + size] = pictures[index]
    return grid


def encode_png(picture: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array (deterministic: Pillow writes no timestamps)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """RGB uint8 array of PNG bytes."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
