"""The batched engine against a plain per-filter loop written from the Keras example's steps."""

import base64

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.pictures import decode_png
from shared.spec import parse_spec
from worker.engine import Frames, auto_batch_size, start_image
from worker.frames import FRAME_SIDE, frame_data
from worker.render import render

SIZE, STEPS = 32, 6


def reference_ascent(network, layer, filter_index, seed, steps=STEPS, step_size=1.0):
    """Method `seed` as the Keras example runs it, one filter at a time, eagerly: returns (image, last loss, dead)."""
    cut = keras.Model(network.input, network.get_layer(layer).output)
    image = tf.Variable(start_image(seed, filter_index, SIZE)[None])
    loss = None
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(cut(image)[..., filter_index])
        grads = tape.gradient(loss, image)
        grads /= tf.sqrt(tf.reduce_mean(tf.square(grads))) + 1e-7
        image.assign_add(step_size * grads)
        if loss <= 0:
            return image.numpy()[0], float(loss), True
    return image.numpy()[0], float(loss), False


@pytest.mark.parametrize(("layer", "filters"), [("block2_conv1", [0, 5, 17, 33, 90]), ("block4_conv2", [1, 2, 3, 300])])
def test_batched_equals_one_filter_at_a_time(loaded_model, engine, layer, filters):
    batched = engine.ascend(
        layer, filters, image_size=SIZE, steps=STEPS, step_size=1.0, seed=11, batch_size=len(filters)
    )
    for result in batched:
        image, loss, dead = reference_ascent(loaded_model.network, layer, result.index, seed=11)
        assert result.dead == dead
        assert result.loss == pytest.approx(loss, rel=1e-4, abs=1e-4)
        np.testing.assert_allclose(result.image, image, atol=1e-3)


def test_a_mix_of_live_and_dead_filters_is_exercised(engine):
    # Seeded random weights leave some filters dead at once: the test above covers both kinds.
    results = engine.ascend(
        "block2_conv1", list(range(24)), image_size=SIZE, steps=2, step_size=1.0, seed=11, batch_size=24
    )
    assert {r.dead for r in results} == {True, False}


def test_dead_filters_stop_changing(engine):
    def run(steps):
        filters = list(range(24))
        return engine.ascend("block2_conv1", filters, image_size=SIZE, steps=steps, step_size=1.0, seed=5, batch_size=8)

    short, longer = run(STEPS), run(STEPS + 3)
    for a, b in zip(short, longer, strict=True):
        if a.dead:
            assert a.loss <= 0 and b.dead and b.steps_run == a.steps_run
            np.testing.assert_array_equal(a.image, b.image)
        else:
            assert a.steps_run == STEPS


def test_ascent_raises_each_live_filters_activation(loaded_model, engine):
    layer, filters = "block3_conv2", list(range(12))
    cut = keras.Model(loaded_model.network.input, loaded_model.network.get_layer(layer).output)
    results = engine.ascend(layer, filters, image_size=SIZE, steps=STEPS, step_size=1.0, seed=2, batch_size=6)
    alive = [r for r in results if not r.dead]
    assert alive
    for result in alive:
        before = cut(start_image(2, result.index, SIZE)[None])[..., result.index].numpy().mean()
        after = cut(result.image[None])[..., result.index].numpy().mean()
        assert after > before


def test_batch_size_does_not_change_the_pictures(engine):
    spec = parse_spec({"layer": "block3_conv1", "filters": list(range(10)), "image_size": SIZE, "steps": 4, "seed": 3})
    one = render(engine, spec, "random:3", batch_size=1)
    many = render(engine, spec, "random:3", batch_size=10)
    assert one.order == many.order
    for a, b in zip(one.filters, many.filters, strict=True):
        assert np.abs(a.picture.astype(int) - b.picture.astype(int)).max() <= 1


def test_same_seed_same_bytes_other_seed_other_pictures(engine):
    from shared.pictures import encode_png

    def grid_bytes(seed):
        spec = parse_spec({"layer": "block3_conv1", "filters": list(range(8)), "image_size": SIZE, "steps": 3,
                           "grid": {"n": 2}, "seed": seed})  # fmt: skip
        rendering = render(engine, spec, "random:3", batch_size=4)
        return encode_png(rendering.grid), [encode_png(f.picture) for f in rendering.filters]

    first, again, other = grid_bytes(1), grid_bytes(1), grid_bytes(2)
    assert first == again
    assert first[0] != other[0]
    assert all(a != b for a, b in zip(first[1], other[1], strict=True))


def test_grid_of_a_render_has_the_spec_side_and_loss_order(engine):
    spec = parse_spec({"layer": "block2_conv2", "filters": list(range(30)), "image_size": SIZE, "steps": 3,
                       "grid": {"n": 3, "margin": 2}, "seed": 4})  # fmt: skip
    rendering = render(engine, spec, "random:3", batch_size=16)
    assert rendering.grid.shape == (3 * SIZE + 2 * 2, 3 * SIZE + 2 * 2, 3)
    by_index = {f.index: f for f in rendering.filters}
    losses = [by_index[k].loss for k in rendering.order]
    assert losses == sorted(losses, reverse=True)
    assert not any(by_index[k].dead for k in rendering.order)
    first = by_index[rendering.order[0]].picture
    assert (rendering.grid[:SIZE, :SIZE] == first).all()


def test_auto_batch_size_fits_the_budget_and_the_filter_count():
    assert auto_batch_size("block5_conv1", 128, 200, 1024) < auto_batch_size("block5_conv1", 64, 200, 1024)
    assert auto_batch_size("block5_conv1", 32, 3, 1024) == 3
    assert auto_batch_size("block5_conv1", 512, 200, 1) == 1


@pytest.mark.parametrize("method", ["seed", "fourier"])
def test_frames_show_each_batch_as_it_forms_and_change_nothing(engine, method):
    shown = []
    run = {"layer": "block2_conv1", "filters": [3, 8, 13], "image_size": SIZE, "steps": 4, "step_size": 1.0,
           "seed": 5, "batch_size": 2, "method": method}  # fmt: skip
    watched = engine.ascend(**run, frames=Frames(due=lambda: True, show=shown.append))
    # Every step but the last, whose pictures are stored at once.
    batches = [([3, 8], step) for step in range(1, 4)] + [([13], step) for step in range(1, 4)]
    assert [(frame.filters, frame.step) for frame in shown] == batches
    assert all(frame.steps == 4 and len(frame.images) == len(frame.losses) == len(frame.filters) for frame in shown)
    unwatched = engine.ascend(**run)
    for with_frames, without in zip(watched, unwatched, strict=True):
        np.testing.assert_array_equal(with_frames.image, without.image)
    spec = parse_spec({"layer": "block2_conv1", "filters": [3, 8, 13], "image_size": SIZE, "method": method})
    data = frame_data(spec, 0, shown[0])
    assert [entry["index"] for entry in data["filters"]] == [3, 8]
    picture = decode_png(base64.b64decode(data["filters"][0]["picture"].removeprefix("data:image/png;base64,")))
    assert picture.shape == (SIZE, SIZE, 3) and SIZE <= FRAME_SIDE
    assert data["filters"][0]["loss"] == pytest.approx(float(shown[0].losses[0]))
