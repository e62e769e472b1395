"""The loop every recipe shares: start images, octaves of compiled steps, a final clean evaluation."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from shared.models import Preprocessing
from shared.objectives import DEFAULT_OBJECTIVE, tracks_channels
from worker.engine.backend import Tensor
from worker.engine.backend import active as backend
from worker.engine.core import FilterAscent, Frame, Frames, filter_keys
from worker.engine.network import Cut, activate, channel_means, pre_activation, preprocess
from worker.engine.objectives import objective, objective_values
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
        values = losses(network_input(seen), ops.repeat(filters, copies, axis=0), relu, inset)
        # An image's loss is the mean over the copies (crops) it was seen as.
        return ops.mean(ops.reshape(values, (-1, copies)), axis=1)

    def evaluate(variable, filters):
        """The image, its objective and the mean of its channel's positive part, with no transform."""
        rgb = recipe.param.rgb(variable)
        pre = pre_activation(cut, network_input(rgb), ops.relu)
        post = activate(cut, pre, ops.relu)
        value = objective_values(pre if recipe.pre_relu else post, filters, terms)
        return rgb, value, channel_means(ops.relu(post), filters)

    step = backend.recipe_step(losses_of, recipe.optimizer.update)
    return CompiledRecipe(recipe, step, backend.compiled(evaluate), tracks_channels(terms))


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
    """Run a recipe on one batch, one image per filter; None when `should_stop` said so between steps;
    `frames` sees the batch as it forms.

    Filters never stop early (transforms and redirected gradients can bring a dead one back); a
    filter is dead when its final picture leaves its channel at zero after the ReLU (where the
    objective is about its channel; otherwise none is).
    """
    recipe = compiled.recipe
    schedule = octaves(image_size, steps, recipe.octaves, recipe.octave_scale, min_size)
    variable = ops.convert_to_tensor(np.stack([recipe.param.init(seed, k, schedule[0].size) for k in filters]))
    filter_ids = ops.convert_to_tensor(np.array(filters, np.int32))
    keys = ops.convert_to_tensor(filter_keys(seed, filters))
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
                rgb = np.asarray(recipe.param.rgb(variable))
                frames.show(Frame(filters, t, steps, rgb, np.asarray(losses, dtype=np.float64)))
    rgb, value, activation = (np.asarray(x) for x in compiled.evaluate(variable, filter_ids))
    started_dead = (start_activation <= 0) & compiled.per_filter
    dead = (activation <= 0) & compiled.per_filter
    return [
        FilterAscent(
            k,
            rgb[i],
            float(value[i]),
            bool(dead[i]),
            steps,
            bool(started_dead[i] and not dead[i]),
            start_loss=float(start_value[i]),
        )
        for i, k in enumerate(filters)
    ]
