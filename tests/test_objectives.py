"""Objectives beyond a channel's mean (shared/objectives.py): validated, part of the cache key, and
each one rises from the start to the final picture."""

import hashlib
import json

import numpy as np
import pytest

from shared import cache
from shared.objectives import describe_objectives
from shared.spec import describe_problems, parse_spec

FOURIER = {"method": "fourier", "layer": "block3_conv1", "filters": [0, 1], "image_size": 32, "seed": 4}
DIRECTION = {"kind": "direction", "vector": [float(v) for v in np.random.default_rng(0).standard_normal(256)]}
OBJECTIVES = [
    {"kind": "channel"},
    {"kind": "neuron"},
    {"kind": "neuron", "x": 0.1, "y": 0.9},
    {"kind": "layer"},
    DIRECTION,
    [{"kind": "channel"}, {"kind": "neuron", "weight": 0.5}],
]


def problems(data: dict) -> list[dict]:
    try:
        parse_spec(data)
    except ValueError as error:
        return describe_problems(error)  # type: ignore[arg-type]
    return []


@pytest.mark.unit
def test_one_term_or_a_list_is_stored_as_the_list_with_its_defaults():
    assert parse_spec(FOURIER).objective_terms == [{"weight": 1.0, "kind": "channel"}]
    one = parse_spec({**FOURIER, "objective": {"kind": "neuron", "x": 0.25}}).objective_terms
    assert one == [{"weight": 1.0, "kind": "neuron", "x": 0.25, "y": 0.5}]
    two = parse_spec({**FOURIER, "objective": [{"kind": "channel"}, {"kind": "layer", "weight": -2}]}).objective_terms
    assert [term["kind"] for term in two] == ["channel", "layer"] and two[1]["weight"] == -2


@pytest.mark.unit
@pytest.mark.parametrize(
    ("objective", "field", "words"),
    [
        ({"kind": "class"}, "objective.0", "expected tags: 'channel', 'neuron', 'layer', 'direction'"),
        ({"kind": "neuron", "x": 1.5}, "objective.0.neuron.x", "above the limit of 1"),
        ({"kind": "layer", "weight": "1"}, "objective.0.layer.weight", "valid number"),
        ({"kind": "channel", "size": 3}, "objective.0.channel.size", "not permitted"),
        ({"kind": "direction", "vector": [1.0, 2.0]}, "objective", "256 numbers, not 2"),
        ({"kind": "direction", "vector": [0.0] * 256}, "objective.0.direction.vector", "all zeros"),
        ([], "objective", "at least 1"),
        ([{"kind": "layer"}] * 9, "objective", "at most 8"),
    ],
)
def test_a_bad_objective_is_named_by_its_field(objective, field, words):
    found = problems({**FOURIER, "objective": objective})
    assert found and found[0]["field"].startswith(field) and words in found[0]["reason"], found


@pytest.mark.unit
def test_seed_keeps_its_channel_mean():
    assert parse_spec({"objective": {"kind": "channel"}}).objective_terms[0]["kind"] == "channel"
    found = problems({"objective": {"kind": "layer"}})
    assert found[0]["field"] == "objective" and "method seed maximises its channel's mean alone" in found[0]["reason"]


@pytest.mark.unit
def test_the_cache_key_differs_by_objective_and_the_channel_mean_keeps_its_old_key():
    keys = {
        cache.entry_hash(parse_spec({**FOURIER, "objective": objective}), "random:3", 0) for objective in OBJECTIVES
    }
    assert len(keys) == len(OBJECTIVES)
    # A channel-mean job's key is the one it had before objectives existed: no objective in it.
    spec = parse_spec(FOURIER)
    before = {"pixels_version": cache.PIXELS_VERSION, "model": "vgg16", "weights": "random:3", "method": "fourier",
              "method_params": spec.method_params, "layer": "block3_conv1", "image_size": 32, "steps": spec.steps,
              "step_size": spec.step_size, "seed": 4, "filter": 0}  # fmt: skip
    expected = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert cache.entry_hash(spec, "random:3", 0) == expected


@pytest.mark.unit
def test_every_kind_is_listed_with_its_parameters():
    listed = {entry["kind"]: entry["schema"]["properties"] for entry in describe_objectives()}
    assert set(listed) == {"channel", "neuron", "layer", "direction"}
    assert {"x", "y", "weight"} <= set(listed["neuron"]) and "vector" in listed["direction"]


@pytest.mark.engine
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o["kind"] if isinstance(o, dict) else "sum")
def test_each_objective_rises_from_the_start_to_the_final_picture(engine, objective):
    from worker.render import ascend_spec

    spec = parse_spec({**FOURIER, "objective": objective, "steps": 12})
    for ascent in ascend_spec(engine, spec, spec.filters, batch_size=2):
        assert ascent.start_loss is not None and ascent.loss > ascent.start_loss, (objective, ascent)
