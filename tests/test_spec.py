"""The job spec: defaults from the Keras example, and every bad value named with its field."""

import pytest
from pydantic import ValidationError

from shared.spec import JobSpec, Limits, describe_problems, limited_spec_model, parse_spec


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
        (
            {"layer": "block9_conv1"},
            "layer",
            "unknown layer 'block9_conv1' for vgg16; GET /v1/models lists the conv layers",
        ),
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
        ({"model": "resnet51"}, "model", "resnet50"),
    ],
)
def test_bad_values_name_their_field(data, field, words):
    found = problems(data)
    assert any(p["field"] == field and words in p["reason"] for p in found), found


def test_limits_are_configurable():
    assert problems({"filters": list(range(10))}, Limits(max_filters=4))[0]["field"] == "filters"
    assert parse_spec({"filters": list(range(10))}, Limits(max_filters=10)).filters == list(range(10))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"steps": True}, "steps"),
        ({"steps": "20"}, "steps"),
        ({"image_size": 64.0}, "image_size"),
        ({"step_size": True}, "step_size"),
        ({"filters": [True, False]}, "filters.0"),
        ({"grid": {"n": True, "margin": False}}, "grid.n"),
        ({"seed": 1e18}, "seed"),
    ],
)
def test_numbers_are_taken_strictly(data, field):
    assert any(p["field"] == field for p in problems(data))


@pytest.mark.parametrize(
    ("stop", "echoed"),
    [(2336070789, "2336070789"), (2**63, "9223372036854775808"), (10**30, "10000000000000000000... (31 characters)")],
)
def test_a_huge_range_is_refused_on_its_bounds(stop, echoed):
    found = problems({"filters": {"start": 0, "stop": stop}})
    assert found == [{"field": "filters.stop", "reason": f"{echoed} is above the limit of 2048"}]


def test_a_range_longer_than_the_limit_is_refused_before_it_is_built():
    found = problems({"layer": "block4_conv1", "filters": {"start": 0, "stop": 300}}, Limits(max_filters=100))
    assert found == [{"field": "filters", "reason": "300 filters asked for; at most 100 per job"}]


def test_a_spec_accepted_under_raised_limits_loads_back_without_them():
    raised = Limits(max_steps=1000, max_image_size=1024, max_grid_n=20, max_grid_side=20 * 1024 + 19 * 5)
    spec = parse_spec({"steps": 300, "image_size": 1024, "grid": {"n": 20}, "filters": list(range(400))}, raised)
    stored = JobSpec.model_validate_json(spec.model_dump_json())
    assert stored == spec and (stored.steps, stored.image_size, stored.grid.n) == (300, 1024, 20)


def test_a_grid_wider_than_the_limit_is_refused_naming_the_grid():
    found = problems({"filters": {"start": 0, "stop": 64}, "image_size": 512, "grid": {"n": 8, "margin": 64}})
    assert found == [
        {
            "field": "grid",
            "reason": "the grid would be 4544 px a side (n*image_size + (n-1)*margin "
            "with n=8), above the limit of 4096; ask for a smaller grid.n, grid.margin or image_size",
        }
    ]
    assert parse_spec({"filters": {"start": 0, "stop": 64}, "image_size": 512, "grid": {"n": 8, "margin": 64}},
                      Limits(max_grid_side=4544)).grid_side == 4544  # fmt: skip


@pytest.mark.parametrize(("count", "asked", "kept"), [(3, 16, 2), (4, 8, 2), (5, 3, 3), (64, 8, 8), (65, 16, 9)])
def test_grid_n_is_at_most_the_grid_that_holds_every_filter(count, asked, kept):
    # Rows past the filters asked for would always be black: a 1-filter job can't make a 16 x 16 grid.
    spec = parse_spec({"layer": "block3_conv1", "filters": list(range(count)), "grid": {"n": asked}})
    assert spec.grid.n == kept
    assert parse_spec({"layer": "block3_conv1", "filters": list(range(count))}).grid.n == min(8, kept)


def test_a_stored_grid_loads_as_it_was_accepted():
    stored = JobSpec.model_validate({**parse_spec({"filters": [0]}).model_dump(), "grid": {"n": 8, "margin": 5}})
    assert stored.grid.n == 8


def test_the_validated_form_holds_the_list_a_range_was_expanded_to():
    spec = parse_spec({"filters": {"start": 3, "stop": 6}})
    assert type(spec) is JobSpec and JobSpec.model_validate_json(spec.model_dump_json()).filters == [3, 4, 5]
    with pytest.raises(ValidationError):  # a range is the request's form only
        JobSpec.model_validate({"filters": {"start": 3, "stop": 6}})


def test_the_schema_states_the_limits_the_validator_enforces():
    limits = Limits(max_filters=7, max_image_size=99, max_steps=5, max_grid_n=3)
    schema = limited_spec_model(limits).model_json_schema()
    properties, defs = schema["properties"], schema["$defs"]
    assert properties["steps"]["maximum"] == 5 and properties["image_size"]["maximum"] == 99
    assert defs["Grid"]["properties"]["n"]["maximum"] == 3
    assert properties["filters"]["anyOf"][0]["oneOf"][0]["maxItems"] == 7
    assert problems({"steps": 6}, limits)[0]["reason"] == "6 is above the limit of 5"
    assert parse_spec({"steps": 5, "image_size": 99, "filters": list(range(7))}, limits).steps == 5
