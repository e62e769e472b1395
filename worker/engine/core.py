"""What the engine hands back for each filter, and the per-filter random streams every part draws from."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FilterAscent:
    """One filter's outcome: its image (RGB, 0..255 scale), its final loss, whether it is dead, steps run.

    `revived`: the filter was dead on its starting image and is alive on its final one.
    `start_loss`: the objective on the starting image, where the method measures it (not `seed`).
    """

    index: int
    image: np.ndarray  # float32, image_size x (pictures * image_size) x 3: a diversity job's side by side
    loss: float
    dead: bool
    steps_run: int
    revived: bool = False
    start_loss: float | None = None


@dataclass(frozen=True)
class Frame:
    """A running batch's images while they form (RGB as FilterAscent.image), after `step` of `steps`, with
    each filter's current loss."""

    filters: list[int]
    step: int
    steps: int
    images: np.ndarray
    losses: np.ndarray


@dataclass(frozen=True)
class Frames:
    """Where a run shows its batch while it forms: `due` is asked after every step but the last (whose
    pictures are stored at once) and must be cheap; only when it says so are the images copied out for
    `show`."""

    due: Callable[[], bool]
    show: Callable[[Frame], None]


def filter_rng(seed: int, filter_index: int, stream: int = 0) -> np.random.Generator:
    """A generator keyed on (seed, filter, stream) alone, so a filter's draws never depend on its batch."""
    key = [seed, filter_index] if stream == 0 else [seed, filter_index, stream]
    return np.random.default_rng(key)


def filter_keys(seed: int, filters: list[int]) -> np.ndarray:
    """One int32 pair per filter, the key of its random transforms inside the compiled step."""
    return np.stack([filter_rng(seed, k, stream=1).integers(0, 2**31 - 1, size=2) for k in filters]).astype(np.int32)
