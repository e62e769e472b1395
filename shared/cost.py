"""What a job costs before it runs: compute (FLOPs from the layer shapes) and output bytes.

The API refuses a job over budget and sizes its chunks by cost, so that every chunk fits its
time limit on the configured worker class. FLOPs are counted as bench/engine.py counts them:
2 per multiply-add of each convolution up to the layer (shared/layers.py), forward plus input gradient (about equal)
per image and step.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import floor, isqrt

from PIL import Image

from shared.layers import convolutions_up_to, layer_named
from shared.methods import METHODS
from shared.models import DEFAULT_MODEL
from shared.spec import JobSpec

# Forward pass plus the gradient with respect to the input: about twice the forward FLOPs.
PASSES_PER_STEP = 2
# A chunk is planned to take at most this share of its time limit: estimates are rough, the
# worker's speed wanders, and the soft limit comes 30 s before the hard one.
CHUNK_HEADROOM = 0.5
RGB = 3
TERA = 1e12


def forward_flops(layer_name: str, image_size: int, model: str = DEFAULT_MODEL) -> int:
    """Multiply-add FLOPs (2 per MAC) of every convolution up to and including `layer_name`, for one image."""
    layer = layer_named(layer_name, model)
    return sum(
        2 * (image_size // conv.downsampling) ** 2 * conv.macs_per_pixel for conv in convolutions_up_to(layer, model)
    )


def network_input(spec: JobSpec) -> tuple[int, int]:
    """How many images the network sees per filter and step, and their side, as the method says.

    Multiscale's early octaves are smaller: counting them at full size keeps the estimate an upper bound.
    A diversity objective renders several pictures of each filter.
    """
    method = METHODS[spec.method]
    copies = method.images_per_filter(spec.method_params) * spec.pictures_per_filter
    return copies, method.network_side(spec.method_params, spec.image_size)


def step_flops(spec: JobSpec) -> int:
    """FLOPs of one filter's step: forward and input gradient of each image the network sees."""
    copies, side = network_input(spec)
    return PASSES_PER_STEP * copies * forward_flops(spec.layer, side, spec.model)


def filter_flops(spec: JobSpec) -> int:
    """FLOPs of one filter's ascent: every step."""
    return step_flops(spec) * spec.steps


@dataclass(frozen=True)
class Cost:
    """A job's estimated compute and the most it can store."""

    flops: int
    # Raw RGB of each filter's picture and of the grid: a PNG of them is about that or smaller.
    output_bytes: int
    grid_pixels: int


def job_cost(spec: JobSpec) -> Cost:
    """The estimate for a whole job (dead filters stop early, so it is an upper bound)."""
    grid_pixels = spec.grid_side**2
    return Cost(
        flops=filter_flops(spec) * len(spec.filters),
        output_bytes=(len(spec.filters) * spec.pictures_per_filter * spec.image_size**2 + grid_pixels) * RGB,
        grid_pixels=grid_pixels,
    )


@dataclass(frozen=True)
class Budget:
    """What one job may cost, from the worker class a deployment configures."""

    job_flops: float
    # The most one chunk may cost: CHUNK_HEADROOM of its time limit at the worker's rate.
    chunk_flops: float
    output_bytes: int

    @classmethod
    def for_workers(cls, worker_gflops: float, chunk_time_limit: float, job_tflop: float, output_mb: int) -> "Budget":
        """job_tflop 0 means: the largest admitted job fits one chunk's time limit on one worker."""
        chunk_flops = worker_gflops * 1e9 * chunk_time_limit * CHUNK_HEADROOM
        return cls(job_tflop * TERA or chunk_flops, chunk_flops, output_mb * 2**20)


def over_budget(spec: JobSpec, budget: Budget) -> str | None:
    """Why the job can't be admitted, with by how much and what to shrink; None when it fits."""
    cost = job_cost(spec)
    if cost.flops > budget.job_flops:
        return (
            f"this job needs about {cost.flops / TERA:.1f} TFLOP, {cost.flops / budget.job_flops:.1f}x the "
            f"per-job budget of {budget.job_flops / TERA:.1f} TFLOP; {_what_to_shrink(spec, budget.job_flops)}"
        )
    one_filter = filter_flops(spec)
    if one_filter > budget.chunk_flops:
        return (
            f"one filter needs about {one_filter / TERA:.1f} TFLOP, {one_filter / budget.chunk_flops:.1f}x what a "
            f"chunk may take within its time limit ({budget.chunk_flops / TERA:.1f} TFLOP); "
            f"{_what_to_shrink(spec, budget.chunk_flops, filters=1)}"
        )
    most_pixels = Image.MAX_IMAGE_PIXELS  # None where Pillow's decompression-bomb check is turned off
    if most_pixels is not None and cost.grid_pixels > most_pixels:
        # Larger grids are refused as decompression bombs when the thumbnail is made.
        return (
            f"the grid would be {spec.grid_side} px a side ({cost.grid_pixels / 1e6:.0f} Mpx), above the "
            f"{most_pixels / 1e6:.0f} Mpx a picture may have; use a smaller grid.n or image_size"
        )
    if cost.output_bytes > budget.output_bytes:
        return (
            f"this job may store about {cost.output_bytes / 2**20:.0f} MiB, "
            f"{cost.output_bytes / budget.output_bytes:.1f}x the limit of {budget.output_bytes / 2**20:.0f} MiB; "
            "ask for fewer filters or a smaller image_size"
        )
    return None


def _what_to_shrink(spec: JobSpec, flops_budget: float, filters: int | None = None) -> str:
    """The largest filters, steps or image_size that would fit, each with the others unchanged."""
    filters = filters or len(spec.filters)
    per_step = step_flops(spec)
    most_filters = floor(flops_budget / (per_step * spec.steps))
    most_steps = floor(flops_budget / (per_step * filters))
    # Conv FLOPs grow with the image's area (about: each block rounds its side down).
    about_side = isqrt(floor(spec.image_size**2 * flops_budget / (per_step * filters * spec.steps)))
    options = [f"at most {most_filters} filters"] if filters > 1 and most_filters >= 1 else []
    options += [f"steps at most {most_steps}"] if most_steps >= 1 else []
    options += [f"image_size about {about_side} or less"] if about_side >= 1 else []
    return "ask for " + ", or ".join(options) if options else "choose an earlier layer"


def split_by_cost(
    filters: Sequence[int], flops_per_filter: float, max_chunk_flops: float, max_count: int
) -> list[list[int]]:
    """Consecutive chunks of filters, each of at most max_count filters and max_chunk_flops.

    Every filter of a job costs the same (same layer, size and steps), so this is a count per
    chunk derived from the cost; a single filter over max_chunk_flops still gets a chunk of its own
    (over_budget refuses such jobs before they get here).
    """
    per_chunk = max(1, min(max_count, floor(max_chunk_flops / max(flops_per_filter, 1))))
    return [list(filters[i : i + per_chunk]) for i in range(0, len(filters), per_chunk)]
