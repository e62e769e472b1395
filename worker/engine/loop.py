"""The loop every recipe shares: start images, octaves of compiled steps, a final clean evaluation."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from shared.models import Preprocessing
from shared.objectives import DEFAULT_OBJECTIVE, pictures_per_filter, tracks_channels
from worker.engine.backend import Tensor
from worker.engine.backend import active as backend
from worker.engine.core import FilterAscent, Frame, Frames, filter_keys
from worker.engine.network import Cut, activate, channel_means, pre_activation, preprocess
from worker.engine.objectives import Rows, objective, objective_values
from worker.engine.recipes import Recipe
from worker.engine.schedule import octaves


@dataclass(frozen=True)
class CompiledRecipe:
    """A recipe's compiled step and evaluation on one layer, for one objective."""

    recipe: Recipe
    step: Callable
    evaluate: Callable
    # Whether each filter's own channel is maximised (else a filter's index only seeds its picture).
    per_filter: bool = True
    # How many pictures each filter gets (a diversity objective's n), side by side in its outcome.
    pictures: int = 1


def compile_recipe(
    cut: Cut, recipe: Recipe, preprocessing: Preprocessing, terms: Sequence[Mapping[str, Any]] = DEFAULT_OBJECTIVE
) -> CompiledRecipe:
    """Compile the recipe's step (losses under random transforms, gradient, update) and evaluation."""
    losses = objective(cut, terms, pre_relu=recipe.pre_relu)
    copies = recipe.transform.copies

    def network_input(rgb: Tensor) -> Tensor:
        return preprocess(preprocessing, rgb)

    def losses_of(variable, filters, keys, step, progress, redirect):
        seen = recipe.transform.apply(recipe.param.rgb(variable), keys, step, progress)
        relu = backend.redirectable_relu(redirect)
        # The transforms pad the picture: a position in it is that far in from the network's edges (the
        # side is static in each compiled shape).
        inset = getattr(recipe.transform, "pad", 0) / seen.shape[1]
        pictures = ops.arange(ops.shape(filters)[0])  # each image of the variable is one picture
        rows = Rows(ops.repeat(filters, copies, axis=0), ops.repeat(pictures, copies, axis=0), inset)
        values = losses(network_input(seen), rows, relu)
        # An image's loss is the mean over the copies (crops) it was seen as.
        return ops.mean(ops.reshape(values, (-1, copies)), axis=1)

    def evaluate(variable, filters):
        """The image, its objective and the mean of its channel's positive part, with no transform."""
        rgb = recipe.param.rgb(variable)
        pre = pre_activation(cut, network_input(rgb), ops.relu)
        post = activate(cut, pre, ops.relu)
        value = objective_values(pre if recipe.pre_relu else post, Rows.one_each(filters), terms)
        return rgb, value, channel_means(ops.relu(post), filters)

    step = backend.recipe_step(losses_of, recipe.optimizer.update)
    return CompiledRecipe(recipe, step, backend.compiled(evaluate), tracks_channels(terms), pictures_per_filter(terms))


def picture_seed(seed: int, picture: int) -> int:
    """The seed of a filter's `picture`-th picture: the job's own for the first (a one-picture job is
    what it always was), past every seed a job may have (< 2**63) for the others."""
    return seed + (picture << 63)


def side_by_side(images: np.ndarray, pictures: int) -> np.ndarray:
    """(F * pictures, H, W, 3) images, each filter's pictures consecutive -> (F, H, pictures * W, 3)."""
    count, height, width, colours = images.shape
    by_filter = images.reshape(count // pictures, pictures, height, width, colours)
    return by_filter.transpose(0, 2, 1, 3, 4).reshape(count // pictures, height, pictures * width, colours)


def ascend_recipe_batch(
    compiled: CompiledRecipe,
    filters: list[int],
    *,
    seed: int,
    image_size: int,
    steps: int,
    step_size: float,
    min_size: int,
    should_stop: Callable[[], bool] | None = None,
    frames: Frames | None = None,
) -> list[FilterAscent] | None:
    """Run a recipe on one batch, one image per filter (or the objective's n, side by side); None when
    `should_stop` said so between steps; `frames` sees the batch as it forms.

    Filters never stop early (transforms and redirected gradients can bring a dead one back); a
    filter is dead when its final pictures leave its channel at zero after the ReLU (where the
    objective is about its channel; otherwise none is).
    """
    recipe, n = compiled.recipe, compiled.pictures
    schedule = octaves(image_size, steps, recipe.octaves, recipe.octave_scale, min_size)
    rows = [(k, picture_seed(seed, picture)) for k in filters for picture in range(n)]
    variable = ops.convert_to_tensor(np.stack([recipe.param.init(s, k, schedule[0].size) for k, s in rows]))
    filter_ids = ops.convert_to_tensor(np.array([k for k, _ in rows], np.int32))
    keys = ops.convert_to_tensor(np.concatenate([filter_keys(s, [k]) for k, s in rows]))
    _, start_value, start_activation = (np.asarray(x) for x in compiled.evaluate(variable, filter_ids))
    t, size = 0, schedule[0].size
    for octave in schedule:
        if octave.size != size:
            variable, size = recipe.param.resize(variable, octave.size), octave.size
        state = recipe.optimizer.init_state(variable)  # a new size starts a new optimisation
        for i in range(octave.steps):
            if should_stop is not None and should_stop():
                return None
            t += 1
            variable, state, losses = compiled.step(
                variable,
                state,
                ops.convert_to_tensor(recipe.optimizer.coefficients(i + 1, step_size)),
                filter_ids,
                keys,
                ops.convert_to_tensor(t, "int32"),
                ops.convert_to_tensor((t - 1) / max(steps - 1, 1), "float32"),
                ops.convert_to_tensor(t <= recipe.redirect_steps),
            )
            # No frame of the last step: the stored picture follows at once.
            if frames is not None and t < steps and frames.due():
                rgb = side_by_side(np.asarray(recipe.param.rgb(variable)), n)
                losses_now = np.asarray(losses, dtype=np.float64).reshape(-1, n).mean(axis=1)
                frames.show(Frame(filters, t, steps, rgb, losses_now))
    rgb, value, activation = (np.asarray(x) for x in compiled.evaluate(variable, filter_ids))
    # Per filter: its pictures side by side, its objective their mean; dead when every one is.
    value, start_value = (v.reshape(-1, n).mean(axis=1) for v in (value, start_value))
    started_dead, dead = (
        np.asarray(np.logical_and(a <= 0, compiled.per_filter).reshape(-1, n).all(axis=1))
        for a in (start_activation, activation)
    )
    return [
        FilterAscent(
            k,
            picture,
            float(value[i]),
            bool(dead[i]),
            steps,
            bool(started_dead[i] and not dead[i]),
            start_loss=float(start_value[i]),
        )
        for i, (k, picture) in enumerate(zip(filters, side_by_side(rgb, n), strict=True))
    ]
