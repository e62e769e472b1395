"""The job spec: defaults from SPEC.md, and every bad value named with its field."""

import pytest
from pydantic import ValidationError

from shared.spec import Limits, describe_problems, parse_spec


def problems(data, limits=None):
    with pytest.raises(ValidationError) as caught:
        parse_spec(data, limits)
    return describe_problems(caught.value)


def test_defaults_are_the_seed_numbers():
    spec = parse_spec({})
    assert (spec.model, spec.method, spec.layer) == ("vgg16", "seed", "block5_conv1")
    assert spec.filters == list(range(200))
    assert (spec.image_size, spec.steps, spec.step_size) == (128, 20, 1.0)
    assert (spec.grid.n, spec.grid.margin) == (8, 5)
    assert isinstance(spec.seed, int)


def test_default_filters_are_capped_by_the_layer():
    assert parse_spec({"layer": "block1_conv1"}).filters == list(range(64))


def test_filter_range_is_expanded_stop_exclusive():
    assert parse_spec({"filters": {"start": 3, "stop": 6}}).filters == [3, 4, 5]


def test_grid_side():
    assert parse_spec({"image_size": 64, "grid": {"n": 4, "margin": 3}}).grid_side == 4 * 64 + 3 * 3


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"layer": "block9_conv1"}, "layer", "unknown layer"),
        ({"filters": [512]}, "filters", "out of range"),
        ({"layer": "block1_conv2", "filters": {"start": 60, "stop": 65}}, "filters", "0..63"),
        ({"filters": {"start": 5, "stop": 5}}, "filters", "empty range"),
        ({"filters": [1, 1]}, "filters", "more than once"),
        ({"filters": [-1]}, "filters.0", "greater than or equal"),
        ({"image_size": 8}, "image_size", "too small for block5_conv1"),
        ({"image_size": 4096}, "image_size", "above the limit"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"steps": 10_000}, "steps", "above the limit"),
        ({"step_size": 0}, "step_size", "greater than 0"),
        ({"grid": {"n": 99}}, "grid.n", "above the limit"),
        ({"grid": {"n": 4, "gap": 1}}, "grid.gap", "Extra inputs"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"model": "resnet50"}, "model", "vgg16"),
    ],
)
def test_bad_values_name_their_field(data, field, words):
    found = problems(data)
    assert any(p["field"] == field and words in p["reason"] for p in found), found


def test_limits_are_configurable():
    assert problems({"filters": list(range(10))}, Limits(max_filters=4))[0]["field"] == "filters"
    assert parse_spec({"filters": list(range(10))}, Limits(max_filters=10)).filters == list(range(10))
