"""The manifest: the durable record of a finished job, and the file names shared by a folder and a bucket prefix."""

from collections.abc import Sequence
from typing import Any

from shared.spec import JobSpec

# 2: params carry `method_params` (every default filled in) and each filter says whether it was revived.
MANIFEST_VERSION = 2
GRID_FILE = "grid.png"
# A small copy of the grid, for lists of jobs on slow links.
THUMBNAIL_FILE = "thumbnail.png"
THUMBNAIL_SIDE = 256
MANIFEST_FILE = "manifest.json"


def filter_file(index: int) -> str:
    """Relative name of one filter's picture."""
    return f"filters/{index}.png"


def build_manifest(
    *,
    job_id: str | None,
    spec: JobSpec,
    weights: str,
    filters: Sequence[dict[str, Any]],
    grid_order: Sequence[int],
    timings: dict[str, Any],
    runtime: dict[str, Any],
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to understand and reproduce a rendering, as JSON-ready data.

    `filters` holds one entry per requested filter: index, loss, dead, revived, and optionally where it
    ran. `params` has the method and all its parameters (`method_params`). A filter taken from the
    cache has `cache` (its hash, shared/cache.py); `cache` at the top counts the hits.
    """
    return {
        "manifest_version": MANIFEST_VERSION,
        "id": job_id,
        "params": spec.model_dump(mode="json"),
        "weights": weights,
        "filters": [{**entry, "file": filter_file(entry["index"])} for entry in filters],
        "grid": {"file": GRID_FILE, "order": list(grid_order), "width": spec.grid_side, "height": spec.grid_side},
        "timings": timings,
        "runtime": runtime,
        **({"cache": cache} if cache is not None else {}),
    }
