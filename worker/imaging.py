"""From raw ascent images to pictures (the engine's side): deprocess to uint8, as each method shows its
images. Choosing, stitching and encoding them is shared/pictures.py (the API stitches cached jobs too)."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from shared.methods import METHODS

DEPROCESS_EPSILON = 1e-7
SEED_CONTRAST = 0.1  # the seed's deprocess std


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


def picture(method: str, params: Mapping[str, Any] | None, image: np.ndarray) -> np.ndarray:
    """The uint8 picture shown for a method's raw image."""
    described = METHODS[method]
    if described.shown_as_is:
        return to_picture(image)
    return deprocess(image, contrast=float(described.resolve(params).get("contrast", SEED_CONTRAST)))
