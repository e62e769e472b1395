"""The loop every recipe shares: start images, octaves of compiled steps, a final clean evaluation."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from keras import ops

from shared.models import Preprocessing
from worker.engine.backend import Tensor
from worker.engine.backend import active as backend
from worker.engine.core import FilterAscent, filter_keys
from worker.engine.network import Cut, activate, channel_means, pre_activation, preprocess
from worker.engine.objectives import channel_mean
from worker.engine.recipes import Recipe
from worker.engine.schedule import octaves


@dataclass(frozen=True)
class CompiledRecipe:
    """A recipe's compiled step and evaluation on one layer."""

    recipe: Recipe
    step: Callable
    evaluate: Callable


def compile_recipe(cut: Cut, recipe: Recipe, preprocessing: Preprocessing) -> CompiledRecipe:
    """Compile the recipe's step (losses under random transforms, gradient, update) and evaluation."""
    objective = channel_mean(cut, pre_relu=recipe.pre_relu)
    copies = recipe.transform.copies

    def network_input(rgb: Tensor) -> Tensor:
        return preprocess(preprocessing, rgb)

    def losses_of(variable, filters, keys, step, progress, redirect):
        seen = recipe.transform.apply(recipe.param.rgb(variable), keys, step, progress)
        relu = backend.redirectable_relu(redirect)
        losses = objective(network_input(seen), ops.repeat(filters, copies, axis=0), relu)
        # An image's loss is the mean over the copies (crops) it was seen as.
        return ops.mean(ops.reshape(losses, (-1, copies)), axis=1)

    def evaluate(variable, filters):
        """The image, its objective and the mean of its channel's positive part, with no transform."""
        rgb = recipe.param.rgb(variable)
        pre = pre_activation(cut, network_input(rgb), ops.relu)
        post = activate(cut, pre, ops.relu)
        value = channel_means(pre if recipe.pre_relu else post, filters)
        return rgb, value, channel_means(ops.relu(post), filters)

    return CompiledRecipe(recipe, backend.recipe_step(losses_of, recipe.optimizer.update), backend.compiled(evaluate))


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
) -> list[FilterAscent] | None:
    """Run a recipe on one batch, one image per filter; None when `should_stop` said so between steps.

    Filters never stop early (transforms and redirected gradients can bring a dead one back); a
    filter is dead when its final picture leaves its channel at zero after the ReLU.
    """
    recipe = compiled.recipe
    schedule = octaves(image_size, steps, recipe.octaves, recipe.octave_scale, min_size)
    variable = ops.convert_to_tensor(np.stack([recipe.param.init(seed, k, schedule[0].size) for k in filters]))
    filter_ids = ops.convert_to_tensor(np.array(filters, np.int32))
    keys = ops.convert_to_tensor(filter_keys(seed, filters))
    _, _, start_activation = compiled.evaluate(variable, filter_ids)
    t, size = 0, schedule[0].size
    for octave in schedule:
        if octave.size != size:
            variable, size = recipe.param.resize(variable, octave.size), octave.size
        state = recipe.optimizer.init_state(variable)  # a new size starts a new optimisation
        for i in range(octave.steps):
            if should_stop is not None and should_stop():
                return None
            t += 1
            variable, state, _ = compiled.step(
                variable,
                state,
                ops.convert_to_tensor(recipe.optimizer.coefficients(i + 1, step_size)),
                filter_ids,
                keys,
                ops.convert_to_tensor(t, "int32"),
                ops.convert_to_tensor((t - 1) / max(steps - 1, 1), "float32"),
                ops.convert_to_tensor(t <= recipe.redirect_steps),
            )
    rgb, value, activation = (np.asarray(x) for x in compiled.evaluate(variable, filter_ids))
    started_dead = np.asarray(start_activation) <= 0
    dead = activation <= 0
    return [
        FilterAscent(k, rgb[i], float(value[i]), bool(dead[i]), steps, bool(started_dead[i] and not dead[i]))
        for i, k in enumerate(filters)
    ]
