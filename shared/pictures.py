"""Pictures without the engine: which filters make the grid, stitching it, PNG in and out.

Numpy and Pillow only, so the API (which has no worker code) can stitch the grid of a job whose
every filter came from the cache (shared/cache.py).
"""

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.spec import grid_side


@dataclass(frozen=True)
class FilterOutcome:
    """What the grid needs to know about one filter."""

    index: int
    loss: float
    dead: bool


def grid_order(outcomes: Sequence[FilterOutcome], n: int) -> list[int]:
    """Filter indices for the grid: live filters by final loss, best first (ties by index), at most n*n."""
    alive = [o for o in outcomes if not o.dead]
    ranked = sorted(alive, key=lambda o: (-o.loss, o.index))
    return [o.index for o in ranked[: n * n]]


def stitch_grid(
    order: Sequence[int], pictures: Mapping[int, np.ndarray], *, n: int, image_size: int, margin: int
) -> np.ndarray:
    """Place pictures[order[i]] row-major on a black n x n grid; cells past len(order) stay black. A
    filter with several pictures side by side (a diversity job) shows its first."""
    size = image_size
    side = grid_side(n, size, margin)
    grid = np.zeros((side, side, 3), dtype=np.uint8)
    for cell, index in enumerate(order):
        row, col = divmod(cell, n)
        top, left = row * (size + margin), col * (size + margin)
        grid[top : top + size, left : left + size] = pictures[index][:, :size]
    return grid


def encode_png(picture: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array (deterministic: Pillow writes no timestamps)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """RGB uint8 array of PNG bytes."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
