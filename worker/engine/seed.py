"""Method `seed`, exactly: the Keras example's loop (README, Methods), batched one image per filter.

Each filter's loss is the mean of its channel of the layer's output, and its gradient is normalised
by its own RMS, so a batched run paints the same pictures as one filter at a time. A filter whose
loss is <= 0 after a step is dead and stops.
"""

from collections.abc import Callable

import numpy as np
from keras import ops

from worker.engine.backend import step_module
from worker.engine.core import FilterAscent, Frame, Frames, filter_rng


def start_image(seed: int, filter_index: int, image_size: int) -> np.ndarray:
    """The seed's starting noise, (rand - 0.5) * 20 + 128, drawn from (seed, filter) alone.

    Keying the noise on the filter makes a filter's picture independent of which batch or
    chunk it runs in.
    """
    rng = filter_rng(seed, filter_index)
    return ((rng.random((image_size, image_size, 3)) - 0.5) * 20 + 128).astype(np.float32)


def ascend_seed_batch(
    step: Callable,
    filters: list[int],
    *,
    seed: int,
    image_size: int,
    steps: int,
    step_size: float,
    should_stop: Callable[[], bool] | None = None,
    frames: Frames | None = None,
) -> list[FilterAscent] | None:
    """Run the seed's ascent on one batch; None when `should_stop` said so between two steps. `frames`
    sees the batch as it forms."""
    count = len(filters)
    backend = step_module()
    current = ops.convert_to_tensor(np.stack([start_image(seed, k, image_size) for k in filters]))
    filter_ids = np.array(filters, dtype=np.int32)
    last_loss = np.zeros(count, dtype=np.float64)
    dead = np.zeros(count, dtype=bool)
    steps_run = np.zeros(count, dtype=int)
    active = np.arange(count)
    step_size_t = ops.convert_to_tensor(step_size, dtype="float32")
    for step_index in range(steps):
        if should_stop is not None and should_stop():
            return None
        if active.size == count:
            current, losses = step(current, ops.convert_to_tensor(filter_ids), step_size_t)
        elif backend.RECOMPILES_PER_SHAPE:
            # Dead filters stop: the whole batch is computed (one compiled shape), only live images move.
            moved, losses = step(current, ops.convert_to_tensor(filter_ids), step_size_t)
            alive = np.zeros((count, 1, 1, 1), dtype=bool)
            alive[active] = True
            current = ops.where(ops.convert_to_tensor(alive), moved, current)
            losses = np.asarray(losses)[active]
        else:
            # Dead filters stop: only the live images are computed and updated.
            live = ops.take(current, ops.convert_to_tensor(active, dtype="int32"), axis=0)
            moved, losses = step(live, ops.convert_to_tensor(filter_ids[active]), step_size_t)
            current = ops.scatter_update(current, ops.convert_to_tensor(active[:, None], dtype="int32"), moved)
        losses = np.asarray(losses)
        last_loss[active] = losses
        steps_run[active] += 1
        if frames is not None and step_index + 1 < steps and frames.due():  # the last step's picture is stored next
            frames.show(Frame(filters, step_index + 1, steps, np.asarray(current), last_loss.copy()))
        # As in the seed, the step that finds loss <= 0 is still applied, then the filter stops.
        died = losses <= 0
        dead[active[died]] = True
        active = active[~died]
        if active.size == 0:
            break
    final = np.asarray(current)
    return [
        FilterAscent(k, final[i], float(last_loss[i]), bool(dead[i]), int(steps_run[i])) for i, k in enumerate(filters)
    ]
