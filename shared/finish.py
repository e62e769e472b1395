"""A job's results from its filters: the grid stitched from the stored pictures, its thumbnail, the manifest.

Used by the worker's finish task and by the API, which finishes at submission a job whose every
filter is in the cache (shared/cache.py). Pictures come from the job's prefix, or from the cache
for its hits.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from shared.cache import PIXELS_VERSION, grid_keys, picture_of
from shared.jobs import Job
from shared.manifest import GRID_FILE, MANIFEST_FILE, THUMBNAIL_FILE, THUMBNAIL_SIDE, build_manifest
from shared.pictures import FilterOutcome, decode_png, encode_png, grid_order, stitch_grid
from shared.storage import TRANSFERS, Storage, job_key
from shared.thumbnails import png_thumbnail


def stitch(
    storage: Storage,
    job: Job,
    entries: list[dict[str, Any]],
    hits: dict[int, dict[str, Any]],
    in_hand: Mapping[int, np.ndarray] = MappingProxyType({}),
) -> tuple[list[int], bytes]:
    """The grid order and PNG of the job's filters (entries: index, loss, dead); `in_hand`: pictures the
    caller rendered and stored itself, by index, which are not read back."""
    spec = job.spec
    order = grid_order([FilterOutcome(e["index"], e["loss"], e["dead"]) for e in entries], spec.grid.n)
    unread = [k for k in order if k not in in_hand]
    # A picture gone from the bucket ends the finish with MissingObject, which names it.
    stored = TRANSFERS.map(lambda k: storage.read(picture_of(job.id, k, hits)), unread)
    pictures = {**{k: in_hand[k] for k in order if k in in_hand},
                **{k: decode_png(data) for k, data in zip(unread, stored, strict=True)}}  # fmt: skip
    grid = stitch_grid(order, pictures, n=spec.grid.n, image_size=spec.image_size, margin=spec.grid.margin)
    return order, encode_png(grid)


def write_results(
    storage: Storage,
    job: Job,
    *,
    weights: str,
    entries: list[dict[str, Any]],
    hits: dict[int, dict[str, Any]],
    timings: dict[str, Any],
    runtime: dict[str, Any],
    still_wanted: Callable[[], bool] = lambda: True,
    in_hand: Mapping[int, np.ndarray] = MappingProxyType({}),
) -> bool:
    """Stitch and store the grid, thumbnail and manifest (the manifest last: it means done).

    `entries` are the rendered filters' manifest entries; the hits' are added here. `in_hand`: the
    pictures of some of them, as stored, not read back. False, with nothing stored, when
    `still_wanted` says the job ended meanwhile.
    """
    position = {index: i for i, index in enumerate(job.spec.filters)}
    every = sorted([*entries, *hits.values()], key=lambda e: position[e["index"]])
    order = grid_order([FilterOutcome(e["index"], e["loss"], e["dead"]) for e in every], job.spec.grid.n)
    cached = grid_keys(job.spec, weights, order)
    names = (job_key(job.id, GRID_FILE), job_key(job.id, THUMBNAIL_FILE))
    # An identical grid made before is copied (a repeated request stitches nothing); else stitched. Grids are
    # kept for repeats once a filter repeats (a hit): a job of new pictures alone, most tiny jobs, would
    # spend four of its round trips on a copy nobody asks for.
    copied = job.spec.cache and bool(hits) and all(TRANSFERS.map(storage.copy, cached, names))
    if not copied:
        order, grid_png = stitch(storage, job, every, hits, in_hand)
        if not still_wanted():
            return False
        pictures = [grid_png, png_thumbnail(grid_png, THUMBNAIL_SIDE)]
        copies = [names, cached] if hits else [names]
        # together; the manifest after them, as it means done
        storage.put_all((key, png, "image/png") for keys in copies for key, png in zip(keys, pictures, strict=True))
    elif not still_wanted():
        return False
    manifest = build_manifest(
        job_id=job.id,
        spec=job.spec,
        weights=weights,
        filters=every,
        grid_order=order,
        timings=timings,
        runtime=runtime,
        cache={"hits": len(hits), "rendered": len(entries), "pixels_version": PIXELS_VERSION},
    )
    storage.put_json(job_key(job.id, MANIFEST_FILE), manifest)
    return True
