"""Gradient ascent in input space, many filters at once, by any method of shared/methods.py.

The parts, one idea per module: `param` (how the image is parameterised), `transforms` (what is
drawn per image each step), `objectives` (what is maximised), `optimizers` (how a step moves the
image), `schedule` (octaves), `recipes` (which parts make which method), `loop` (the shared loop),
`seed` (method `seed`, exactly the Keras example), `backend` (which Keras backend, chosen here before
keras is imported) with `tf_step` and `jax_step` (everything specific to TensorFlow or JAX).
Each filter gets its own image in the batch and nothing couples images of different filters, so a
batched run paints the same pictures as one filter at a time (a diversity objective couples a
filter's own pictures, which always share a batch). The engine knows nothing of Celery, Redis or storage.
"""

from worker.engine.backend import select_backend

# Keras reads its backend once, on import: choose it before anything below imports keras.
select_backend()

import json  # noqa: E402
from collections import OrderedDict  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402

from shared.layers import layer_named, model_table  # noqa: E402
from shared.methods import METHODS, SEED  # noqa: E402
from shared.models import DEFAULT_MODEL, seed_preprocessing  # noqa: E402
from shared.objectives import DEFAULT_OBJECTIVE  # noqa: E402
from worker.engine.backend import step_module  # noqa: E402
from worker.engine.core import FilterAscent, Frame, Frames  # noqa: E402
from worker.engine.loop import CompiledRecipe, ascend_recipe_batch, compile_recipe  # noqa: E402
from worker.engine.network import cut_at, preprocess, up_to  # noqa: E402
from worker.engine.recipes import build_recipe  # noqa: E402
from worker.engine.seed import ascend_seed_batch, start_image  # noqa: E402
from worker.engine.sizing import activation_bytes_per_image, auto_batch_size  # noqa: E402

__all__ = [
    "AscentEngine",
    "FilterAscent",
    "Frame",
    "Frames",
    "activation_bytes_per_image",
    "auto_batch_size",
    "start_image",
]

COMPILED_RECIPES_KEPT = 8  # each holds traced graphs; a worker sees few distinct (layer, method, params)


class AscentEngine:
    """Runs the ascent on one loaded network; compiled steps are cached per layer, size and method."""

    def __init__(self, network: keras.Model, model: str = DEFAULT_MODEL) -> None:
        self._network = network
        self._model = model
        table = model_table(model)
        if table is None:
            raise ValueError(f"unknown model {model!r}")
        self._preprocessing = table.preprocessing
        self._steps: dict[tuple[str, int], Callable] = {}
        self._recipes: OrderedDict[tuple, CompiledRecipe] = OrderedDict()

    @property
    def network(self) -> keras.Model:
        """The loaded network the engine ascends."""
        return self._network

    @property
    def model(self) -> str:
        """Which network it is: an architecture of shared/models.py, or an uploaded model's id."""
        return self._model

    def compiled_step(self, layer: str, image_size: int) -> Callable:
        """Method `seed`'s compiled step for a layer and image size (any batch size), built on first use."""
        key = (layer, image_size)
        if key not in self._steps:
            self._steps[key] = step_module().seed_step(self._seed_cut(layer), image_size)
        return self._steps[key]

    def _seed_cut(self, layer: str) -> keras.Model:
        """The network up to `layer`'s output, behind what `seed` feeds it (shared/models.py)."""
        network = up_to(self._network, self._network.get_layer(layer).output)
        kind = seed_preprocessing(self._model, self._preprocessing)
        if kind == "none":
            return network
        pixels = keras.Input((None, None, 3))
        return keras.Model(pixels, network(preprocess(kind, pixels)))

    def compiled_recipe(
        self,
        layer: str,
        method: str,
        params: Mapping[str, Any] | None,
        objective: Sequence[Mapping[str, Any]] = DEFAULT_OBJECTIVE,
    ) -> CompiledRecipe:
        """A method's compiled recipe on a layer for an objective, built on first use (the least recently
        used is dropped)."""
        resolved = METHODS[method].resolve(params)
        key = (layer, method, tuple(sorted(resolved.items())), json.dumps(objective, sort_keys=True))
        if key not in self._recipes:
            recipe = build_recipe(method, resolved)
            cut = cut_at(self._network, layer)
            self._recipes[key] = compile_recipe(cut, recipe, self._preprocessing, objective)
            if len(self._recipes) > COMPILED_RECIPES_KEPT:
                self._recipes.popitem(last=False)
        self._recipes.move_to_end(key)
        return self._recipes[key]

    def ascend(
        self,
        layer: str,
        filters: Sequence[int],
        *,
        image_size: int,
        steps: int,
        step_size: float,
        seed: int,
        batch_size: int,
        on_batch: Callable[[list[FilterAscent]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        frames: Frames | None = None,
        method: str = SEED,
        method_params: Mapping[str, Any] | None = None,
        objective: Sequence[Mapping[str, Any]] = DEFAULT_OBJECTIVE,
    ) -> list[FilterAscent]:
        """Ascend every filter in `filters` in the given order, by `method`.

        `batch_size` is the number of images one step may hold: a method that looks at several
        crops of each image, or an objective with several pictures of each filter, runs that many
        fewer filters at once. `on_batch` hears each finished
        batch (for progress); `should_stop` is asked before every step and ends the run early when
        it returns True (for cancellation): only whole batches are returned. `frames` sees each batch
        while it forms (engine/core.py).
        """
        if method == SEED:
            step = self.compiled_step(layer, image_size)

            def run(batch: list[int]) -> list[FilterAscent] | None:
                return ascend_seed_batch(
                    step, batch, seed=seed, image_size=image_size, steps=steps, step_size=step_size,
                    should_stop=should_stop, frames=frames,
                )  # fmt: skip

            per_batch = batch_size
        else:
            compiled = self.compiled_recipe(layer, method, method_params, objective)
            min_size = layer_named(layer, self._model).min_image_size

            def run(batch: list[int]) -> list[FilterAscent] | None:
                return ascend_recipe_batch(
                    compiled, batch, seed=seed, image_size=image_size, steps=steps, step_size=step_size,
                    min_size=min_size, should_stop=should_stop, frames=frames,
                )  # fmt: skip

            per_batch = max(1, batch_size // (compiled.recipe.transform.copies * compiled.pictures))

        results: list[FilterAscent] = []
        for begin in range(0, len(filters), per_batch):
            finished = run(list(filters[begin : begin + per_batch]))
            if finished is None:
                break
            results.extend(finished)
            if on_batch is not None:
                on_batch(finished)
        return results
