"""Live frames (GET /v1/jobs/{id}/events): a running chunk's pictures while they form, as small PNGs in
the job's event stream, at most FILTERVIZ_FRAMES_PER_SECOND per job however many workers run it.

The engine only asks `due` after each step (a clock read, and one Redis call per interval at most);
pictures are copied out, shrunk and encoded only for a frame that goes out.
"""

import base64
import logging
import math
import time
from typing import Any

import numpy as np
from PIL import Image

from shared.job_events import FRAME, EventStream
from shared.pictures import encode_png
from shared.spec import JobSpec
from worker.engine import Frame, Frames
from worker.imaging import picture

log = logging.getLogger(__name__)

# A frame's pictures fit this square: a cell of the page's grid, a few KB each.
FRAME_SIDE = 64


def frame_tap(events: EventStream, job_id: str, spec: JobSpec, chunk: int, per_second: float) -> Frames | None:
    """The frames of one chunk of a job, or None when frames are off (`per_second` 0)."""
    if per_second <= 0:
        return None
    interval = 1 / per_second
    asked_at = -math.inf

    def due() -> bool:
        nonlocal asked_at
        now = time.monotonic()
        if now - asked_at < interval:
            return False
        asked_at = now  # another worker's frame took the slot: ask again an interval later, not every step
        return events.frame_slot(job_id, interval)

    def show(frame: Frame) -> None:
        try:
            events.publish(job_id, FRAME, frame_data(spec, chunk, frame))
        except Exception:  # a frame is a courtesy: never the chunk's failure
            log.exception("job %s: a frame of chunk %d was lost", job_id, chunk)

    return Frames(due, show)


def frame_data(spec: JobSpec, chunk: int, frame: Frame) -> dict[str, Any]:
    """A frame event's data: the step, and per filter its current loss and picture (a PNG data URL)."""
    return {
        "chunk": chunk,
        "step": frame.step,
        "steps": frame.steps,
        "filters": [
            {"index": index, "loss": float(loss) if math.isfinite(loss) else None,
             "picture": _data_url(picture(spec.method, spec.method_params, image))}
            for index, image, loss in zip(frame.filters, frame.images, frame.losses, strict=True)
        ],
    }  # fmt: skip


def _data_url(rgb: np.ndarray) -> str:
    """The picture shrunk to fit FRAME_SIDE (as shared/thumbnails.py shrinks), each of a diversity job's
    pictures side by side, then encoded once."""
    image = Image.fromarray(rgb)
    pictures = rgb.shape[1] // rgb.shape[0]
    image.thumbnail((FRAME_SIDE * pictures, FRAME_SIDE), Image.Resampling.LANCZOS)
    return "data:image/png;base64," + base64.b64encode(encode_png(np.asarray(image))).decode()
