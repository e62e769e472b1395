"""The methods beyond `seed`: each runs, is reproducible, keeps images independent, and validates its parameters."""

import json

import jsonschema
import keras
import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from shared.methods import METHODS, SEED, describe_methods
from shared.spec import Limits, describe_problems, limited_spec_model, parse_spec
from worker.engine.optimizers import Adam, NAdam
from worker.engine.schedule import octaves
from worker.engine.tf_step import redirectable_relu
from worker.imaging import picture

NEW_METHODS = [name for name in METHODS if name != SEED]
SIZE, STEPS, LAYER = 32, 4, "block3_conv1"


def ascend(engine, method, filters, *, seed=7, batch_size=None, **params):
    return engine.ascend(
        LAYER, filters, image_size=SIZE, steps=STEPS, step_size=METHODS[method].step_size, seed=seed,
        batch_size=batch_size or len(filters), method=method, method_params=params,
    )  # fmt: skip


@pytest.mark.parametrize("method", NEW_METHODS)
def test_a_filters_picture_does_not_depend_on_the_rest_of_its_batch(engine, method):
    # Filter 5 alone, with two companions, and in a batch that runs one filter at a time.
    alone = ascend(engine, method, [5])[0]
    with_others = {r.index: r for r in ascend(engine, method, [40, 5, 17])}
    one_by_one = {r.index: r for r in ascend(engine, method, [17, 40], batch_size=1)}
    np.testing.assert_allclose(with_others[5].image, alone.image, atol=0.05)
    assert with_others[5].loss == pytest.approx(alone.loss, rel=1e-3, abs=1e-3)
    for k in (17, 40):
        np.testing.assert_allclose(with_others[k].image, one_by_one[k].image, atol=0.05)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_same_seed_same_pictures_other_seed_other_pictures(engine, method):
    first, again, other = (ascend(engine, method, [3, 9], seed=s) for s in (1, 1, 2))
    for a, b, c in zip(first, again, other, strict=True):
        assert (picture(method, None, a.image) == picture(method, None, b.image)).all()
        assert not np.allclose(a.image, c.image)
        assert a.image.shape == (SIZE, SIZE, 3) and a.steps_run == STEPS


@pytest.mark.parametrize("method", NEW_METHODS)
def test_more_steps_reach_a_higher_objective(engine, method):
    def losses(steps):
        results = engine.ascend(
            LAYER, [2, 6, 11], image_size=SIZE, steps=steps, step_size=METHODS[method].step_size, seed=7,
            batch_size=3, method=method,
        )  # fmt: skip
        return sum(r.loss for r in results)

    assert losses(4 * STEPS) > losses(1)


def test_redirected_relu_lets_a_fully_blocked_image_move_and_only_while_asked():
    x = tf.constant([[-1.0, -2.0, -0.5, -3.0], [-1.0, 2.0, -0.5, 1.0]])  # image 0 is fully blocked
    upstream = tf.constant([[1.0, -1.0, 2.0, 0.5], [1.0, -1.0, 2.0, 0.5]])

    def grad(redirect):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = redirectable_relu(tf.constant(redirect))(x)
        return tape.gradient(y, x, output_gradients=upstream).numpy()

    on, off = grad(True), grad(False)
    # Blocked image: the gradient that would raise a negative input passes; the one lowering it doesn't.
    np.testing.assert_array_equal(on[0], [1.0, 0.0, 2.0, 0.5])
    # An image the ReLU doesn't fully block keeps the plain ReLU gradient.
    np.testing.assert_array_equal(on[1], [0.0, -1.0, 0.0, 0.5])
    np.testing.assert_array_equal(off, [[0, 0, 0, 0], [0.0, -1.0, 0.0, 0.5]])


def test_redirect_revives_filters_that_start_dead(engine):
    # Post-ReLU objective (as the seed's): filters dead on their starting image get no gradient at all.
    filters = list(range(32))
    plain = ascend(engine, "multiscale", filters, relu_redirect_steps=0, octaves=1, jitter=0)
    redirected = ascend(engine, "multiscale", filters, relu_redirect_steps=STEPS, octaves=1, jitter=0)
    assert not any(r.revived for r in plain)
    revived = [r for r in redirected if r.revived]
    assert revived, "no filter of block3_conv1 started dead on random:3 weights"
    assert all(not r.dead for r in revived)
    assert sum(not r.dead for r in redirected) > sum(not r.dead for r in plain)


@pytest.mark.parametrize("method", [SEED, "maco"])
def test_should_stop_is_asked_before_every_step_and_stops_mid_batch(engine, method):
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) > 2  # stop before the third step of the first batch

    results = engine.ascend(
        LAYER, [0, 1, 2], image_size=SIZE, steps=STEPS, step_size=1.0, seed=1, batch_size=12,
        should_stop=should_stop, method=method,
    )  # fmt: skip
    assert results == [] and len(asked) == 3


@pytest.mark.parametrize("optimizer_class", [Adam, NAdam])
def test_adam_and_nadam_ascend_as_keras_descends_the_negative(optimizer_class):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((2, 3)).astype(np.float32)
    grads = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(5)]
    ours = optimizer_class()
    keras_optimizer = {Adam: keras.optimizers.Adam, NAdam: keras.optimizers.Nadam}[optimizer_class](0.1)
    variable, state = tf.constant(start), ours.init_state(tf.constant(start))
    reference = keras.Variable(start)
    for t, g in enumerate(grads, start=1):
        variable, state = ours.update(variable, tf.constant(g), state, tf.constant(ours.coefficients(t, 0.1)))
        keras_optimizer.apply([tf.constant(-g)], [reference])
    np.testing.assert_allclose(variable.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


def test_octaves_grow_to_the_image_size_and_share_the_steps():
    schedule = octaves(128, 100, count=7, scale=1.2, min_size=16)
    assert [o.size for o in schedule] == [43, 51, 62, 74, 89, 107, 128]
    assert sum(o.steps for o in schedule) == 100 and schedule[-1].steps >= schedule[0].steps
    assert [o.size for o in octaves(64, 3, count=4, scale=2.0, min_size=16)] == [16, 16, 32, 64]


@pytest.mark.parametrize(
    ("request_body", "field", "reason"),
    [
        ({"method": "painting"}, "method", "Input should be 'seed', 'multiscale', 'fourier' or 'maco'"),
        ({"method": "maco", "method_params": {"crops": 0}}, "method_params.crops", "greater than or equal to 1"),
        ({"method": "maco", "method_params": {"crops": 99}}, "method_params.crops", "99 is above the limit of 16"),
        ({"method": "fourier", "method_params": {"jitter": 2.5}}, "method_params.jitter", "valid integer"),
        ({"method": "fourier", "method_params": {"pre_relu": 1}}, "method_params.pre_relu", "valid boolean"),
        ({"method": "fourier", "method_params": {"scale": "big"}}, "method_params.scale", "valid number"),
        ({"method": "multiscale", "method_params": {"octave": 3}}, "method_params", "unknown parameter 'octave'"),
        ({"method": "seed", "method_params": {"crops": 2}}, "method_params", "for method seed (it takes: none)"),
        # A bad method: its parameters are not checked against another method's.
        ({"method": "painting", "method_params": {"crops": 2}}, "method", "Input should be"),
    ],
)
def test_bad_method_parameters_name_the_field_and_the_reason(request_body, field, reason):
    with pytest.raises(ValidationError) as caught:
        parse_spec(request_body)
    assert [(p["field"], reason in p["reason"]) for p in describe_problems(caught.value)] == [(field, True)]


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ({"jitter": True}, "valid integer"),  # JSON true is not 1
        ({"jitter": "3"}, "valid integer"),
        ({"jitter": 1.5}, "valid integer"),
        ({"jitter": 3.0}, "valid integer"),  # as for the spec's own numbers (image_size: 64.0 is not 64)
        ({"scale": True}, "valid number"),
        ({"scale": float("inf")}, "finite number"),
        ({"scale": float("nan")}, "finite number"),
        ({"pre_relu": 0}, "valid boolean"),
        ({"pre_relu": "true"}, "valid boolean"),
    ],
)
def test_method_parameters_are_taken_strictly(given, reason):
    with pytest.raises(ValidationError) as caught:
        METHODS["fourier"].resolve(given)
    [error] = caught.value.errors()
    assert error["loc"] == tuple(given) and reason in error["msg"]


def test_a_float_parameter_takes_a_whole_number_and_stores_a_float():
    params = parse_spec({"method": "fourier", "method_params": {"scale": 0, "rotate": 45}}).method_params
    assert (params["scale"], params["rotate"]) == (0.0, 45.0)
    assert isinstance(params["scale"], float) and isinstance(params["rotate"], float)


def test_each_method_has_a_frozen_model_of_its_parameters_titled_by_its_name():
    for name, method in METHODS.items():
        assert method.params.__name__ == f"{name.capitalize()}Params"
        assert method.params.model_json_schema()["title"] == name
        assert method.resolve(None) == method.params().model_dump()
    assert METHODS[SEED].params.model_fields == {}
    with pytest.raises(ValidationError, match="frozen"):
        METHODS["maco"].params().crops = 2


def test_the_stored_form_of_a_methods_parameters_is_a_dict_of_every_default():
    # What job records, manifests and cache keys (shared/cache.py) hold: keep it as it is.
    stored = parse_spec({"method": "multiscale", "seed": 1}).model_dump_json()
    assert json.loads(stored)["method_params"] == {
        "octaves": 7, "octave_scale": 1.2, "pad": 0, "jitter": 8, "scale": 0.05, "rotate": 5.0,
        "contrast": 0.25, "pre_relu": False, "relu_redirect_steps": 32,
    }  # fmt: skip
    assert '"method_params":{"octaves":7,"octave_scale":1.2,"pad":0,"jitter":8,"scale":0.05,"rotate":5.0,' in stored


def test_the_job_schema_describes_each_methods_parameters_with_their_bounds():
    schema = limited_spec_model(Limits()).model_json_schema()
    choices = [choice["$ref"].rsplit("/", 1)[1] for choice in schema["properties"]["method_params"]["anyOf"]]
    models = [schema["$defs"][choice] for choice in choices]
    assert [model["title"] for model in models] == list(METHODS)
    for model in models:
        assert model["additionalProperties"] is False
        assert list(model["properties"]) == list(METHODS[model["title"]].params.model_fields)
    crops = schema["$defs"]["MacoParams"]["properties"]["crops"]
    assert (crops["type"], crops["minimum"], crops["maximum"], crops["default"]) == ("integer", 1, 16, 4)
    # Every method's stored spec is valid under the schema; a parameter no method takes is not.
    validator = jsonschema.Draft202012Validator(schema)
    for name in METHODS:
        assert list(validator.iter_errors(parse_spec({"method": name, "seed": 1}).model_dump(mode="json"))) == []
    assert not validator.is_valid({"method": "maco", "method_params": {"crops": 2, "octave": 3}})


def test_spec_fills_the_methods_defaults_and_keeps_what_was_given():
    maco = parse_spec({"method": "maco", "method_params": {"crops": 2}, "seed": 1})
    assert maco.steps == METHODS["maco"].steps and maco.step_size == METHODS["maco"].step_size
    assert maco.method_params == {**METHODS["maco"].params().model_dump(), "crops": 2}
    fourier = parse_spec({"method": "fourier", "steps": 7, "step_size": 0.1, "seed": 1})
    assert (fourier.steps, fourier.step_size) == (7, 0.1)
    seed = parse_spec({"seed": 1})
    assert (seed.method, seed.steps, seed.step_size, seed.method_params) == ("seed", 20, 1.0, {})
    # The stored form loads back to the same spec.
    assert type(maco).model_validate_json(maco.model_dump_json()) == maco


def test_models_listing_describes_every_method_with_its_defaults():
    listed = {m["name"]: m for m in describe_methods()}
    assert list(listed) == list(METHODS)
    assert listed["fourier"]["defaults"] == {"steps": 128, "step_size": 0.05}
    crops = next(p for p in listed["maco"]["params"] if p["name"] == "crops")
    assert crops == {**crops, "type": "integer", "default": 4, "minimum": 1, "maximum": 16}
