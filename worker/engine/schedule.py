"""Multi-scale octaves: which sizes an image is optimised at, and how many steps each gets."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Octave:
    """One size and the steps spent on it."""

    size: int
    steps: int


def octaves(image_size: int, steps: int, count: int = 1, scale: float = 1.2, min_size: int = 1) -> list[Octave]:
    """`count` sizes growing by `scale` up to image_size; steps split evenly, the remainder to the last ones.

    With count 1 this is a single octave at image_size (every method but multiscale).
    """
    sizes = [max(min_size, round(image_size / scale ** (count - 1 - i))) for i in range(count)]
    base, extra = divmod(steps, count)
    return [Octave(size, base + (1 if i >= count - extra else 0)) for i, size in enumerate(sizes)]
