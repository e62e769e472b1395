"""A whole rendering without any service: ascend, deprocess, pick and stitch, write a folder."""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shared.manifest import GRID_FILE, MANIFEST_FILE, build_manifest, filter_file
from shared.pictures import FilterOutcome, encode_png, grid_order, stitch_grid
from shared.spec import JobSpec
from worker.engine import AscentEngine, FilterAscent, Frames
from worker.imaging import picture


@dataclass(frozen=True)
class RenderedFilter(FilterOutcome):
    """A filter's outcome with its deprocessed picture, and whether it was revived (dead at the start)."""

    picture: np.ndarray = field(repr=False, compare=False)
    revived: bool = False


@dataclass
class Rendering:
    """All pictures of a job, the grid and what the manifest records."""

    spec: JobSpec
    weights: str
    filters: list[RenderedFilter]
    order: list[int]
    grid: np.ndarray
    timings: dict[str, Any]


def ascend_spec(
    engine: AscentEngine,
    spec: JobSpec,
    filters: Sequence[int],
    *,
    batch_size: int,
    on_batch: Callable[[list[FilterAscent]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    frames: Frames | None = None,
) -> list[FilterAscent]:
    """The raw ascent of `filters` with the spec's method and its parameters, objective, layer, size,
    steps, step size and seed."""
    return engine.ascend(
        spec.layer,
        filters,
        image_size=spec.image_size,
        steps=spec.steps,
        step_size=spec.step_size,
        seed=spec.seed,
        batch_size=batch_size,
        on_batch=on_batch,
        should_stop=should_stop,
        frames=frames,
        method=spec.method,
        method_params=spec.method_params,
        objective=spec.objective_terms,
    )


def render_filters(
    engine: AscentEngine,
    spec: JobSpec,
    filters: Sequence[int],
    *,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    frames: Frames | None = None,
) -> list[RenderedFilter]:
    """Ascend and deprocess `filters` of the spec's layer; `on_progress` hears how many more are done.

    `should_stop` is asked before every step; when it stops the run, fewer filters come back. `frames`
    sees each batch while it forms.
    """

    def finished(batch: list[FilterAscent]) -> None:
        if on_progress is not None:
            on_progress(len(batch))

    ascents = ascend_spec(
        engine, spec, filters, batch_size=batch_size, on_batch=finished, should_stop=should_stop, frames=frames
    )
    return [
        RenderedFilter(a.index, a.loss, a.dead, picture(spec.method, spec.method_params, a.image), a.revived)
        for a in ascents
    ]


def stitch(
    spec: JobSpec, outcomes: Sequence[FilterOutcome], pictures: dict[int, np.ndarray]
) -> tuple[list[int], np.ndarray]:
    """The grid order and picture for a job's filters."""
    order = grid_order(outcomes, spec.grid.n)
    grid = stitch_grid(order, pictures, n=spec.grid.n, image_size=spec.image_size, margin=spec.grid.margin)
    return order, grid


def render(
    engine: AscentEngine,
    spec: JobSpec,
    weights: str,
    *,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> Rendering:
    """Render every filter of the spec and stitch the grid."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    rendered = render_filters(engine, spec, spec.filters, batch_size=batch_size, on_progress=on_progress)
    ascent_seconds = time.perf_counter() - clock
    order, grid = stitch(spec, rendered, {r.index: r.picture for r in rendered})
    timings = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "ascent_seconds": round(ascent_seconds, 3),
        "filters_per_second": round(len(rendered) / ascent_seconds, 4) if ascent_seconds else None,
        "batch_size": batch_size,
    }
    return Rendering(spec, weights, rendered, order, grid, timings)


def filter_entries(filters: Sequence[FilterOutcome], **extra: Any) -> list[dict[str, Any]]:
    """Manifest entries for filters: index, final loss, dead, revived (dead on its starting image, alive on
    its final one), plus any extra fields (e.g. chunk, worker)."""
    return [
        {"index": f.index, "loss": f.loss, "dead": f.dead, "revived": getattr(f, "revived", False), **extra}
        for f in filters
    ]


def write_folder(rendering: Rendering, out_dir: Path, runtime: dict[str, Any]) -> dict[str, Any]:
    """Write grid.png, filters/<k>.png and manifest.json into `out_dir`; returns the manifest."""
    (out_dir / "filters").mkdir(parents=True, exist_ok=True)
    for rendered in rendering.filters:
        (out_dir / filter_file(rendered.index)).write_bytes(encode_png(rendered.picture))
    (out_dir / GRID_FILE).write_bytes(encode_png(rendering.grid))
    manifest = build_manifest(
        job_id=None,
        spec=rendering.spec,
        weights=rendering.weights,
        filters=filter_entries(rendering.filters),
        grid_order=rendering.order,
        timings=rendering.timings,
        runtime=runtime,
    )
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
