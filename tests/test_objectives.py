"""Objectives beyond a channel's mean (shared/objectives.py): validated, part of the cache key, and
each one rises from the start to the final picture."""

import hashlib
import json

import numpy as np
import pytest

from shared import cache
from shared.cost import job_cost
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
    [{"kind": "channel"}, {"kind": "diversity", "n": 2}],
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
        (
            {"kind": "dream"},
            "objective.0",
            "expected tags: 'channel', 'neuron', 'layer', 'direction', 'class', 'divers",
        ),
        (
            {"kind": "class", "class": 130},
            "objective",
            "a class term reads a classifier's logits: choose layer 'logits'",
        ),
        ({"kind": "neuron", "x": 1.5}, "objective.0.neuron.x", "above the limit of 1"),
        ({"kind": "layer", "weight": "1"}, "objective.0.layer.weight", "valid number"),
        ({"kind": "channel", "size": 3}, "objective.0.channel.size", "not permitted"),
        ({"kind": "direction", "vector": [1.0, 2.0]}, "objective", "256 numbers, not 2"),
        ({"kind": "direction", "vector": [0.0] * 256}, "objective.0.direction.vector", "all zeros"),
        ([], "objective", "at least 1"),
        ([{"kind": "layer"}] * 9, "objective", "at most 8"),
        ({"kind": "diversity"}, "objective", "add one, e.g. channel"),
        ([{"kind": "channel"}, {"kind": "diversity"}, {"kind": "diversity", "n": 3}], "objective", "at most one"),
        ([{"kind": "channel"}, {"kind": "diversity", "n": 1}], "objective.1.diversity.n", "greater than or equal to 2"),
        ([{"kind": "channel"}, {"kind": "diversity", "n": 9}], "objective.1.diversity.n", "above the limit of 8"),
        ([{"kind": "channel"}, {"kind": "diversity", "weight": -1}], "objective.1.diversity.weight", "0"),
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
    assert set(listed) == {"channel", "neuron", "layer", "direction", "class", "diversity"}
    assert {"x", "y", "weight"} <= set(listed["neuron"]) and "vector" in listed["direction"]
    assert listed["diversity"]["n"]["default"] == 4 and listed["diversity"]["weight"]["default"] == 100


CLASSES = {
    "model": "mobilenet_v2",
    "layer": "logits",
    "method": "fourier",
    "filters": [0, 1],
    "image_size": 32,
    "seed": 4,
}


@pytest.mark.unit
def test_a_class_by_name_or_by_index_is_the_same_term_and_cache_entry():
    by_index, by_name, by_spaced_name = (
        parse_spec({**CLASSES, "objective": {"kind": "class", "class": wanted}})
        for wanted in (2, "great_white_shark", "Great White Shark")
    )
    assert by_index.objective_terms == [{"weight": 1.0, "kind": "class", "class": 2, "probability": False}]
    assert by_name.objective_terms == by_spaced_name.objective_terms == by_index.objective_terms
    assert cache.entry_hash(by_name, "random:1", 0) == cache.entry_hash(by_index, "random:1", 0)
    probability = parse_spec({**CLASSES, "objective": {"kind": "class", "class": 2, "probability": True}})
    assert cache.entry_hash(probability, "random:1", 0) != cache.entry_hash(by_index, "random:1", 0)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("wanted", "words"),
    [
        ("crane", "'crane' names classes 134 and 517: give the index"),
        ("unicorn", "no ImageNet class is named 'unicorn'"),
        (1000, "1000 is not a class index: 0 to 999"),
        (-1, "-1 is not a class index"),
    ],
)
def test_a_class_that_is_not_one_is_named(wanted, words):
    found = problems({**CLASSES, "objective": {"kind": "class", "class": wanted}})
    assert found[0]["field"] == "objective.0.class.class" and words in found[0]["reason"], found


@pytest.mark.engine
def test_a_class_by_name_paints_what_its_index_paints_and_what_its_logits_channel_paints():
    from worker.engine import AscentEngine
    from worker.model import load_network
    from worker.render import ascend_spec

    engine = AscentEngine(load_network("random:1", model="mobilenet_v2").network, "mobilenet_v2")
    # Filter 130 of the logits layer is flamingo's logit: the channel objective on it is the class term's.
    objectives = [{"kind": "class", "class": 130}, {"kind": "class", "class": "flamingo"}, {"kind": "channel"}]
    runs = [
        ascend_spec(engine, spec, spec.filters, batch_size=1)[0]
        for spec in (parse_spec({**CLASSES, "filters": [130], "steps": 4, "objective": o}) for o in objectives)
    ]
    assert runs[0].start_loss != runs[0].loss  # it moved
    for other in runs[1:]:
        np.testing.assert_array_equal(other.image, runs[0].image)
        assert (other.start_loss, other.loss) == (runs[0].start_loss, runs[0].loss)
    # Its log-probability, after the softmax over the 1,000 logits: below zero, and moved by the ascent.
    spec = parse_spec(
        {**CLASSES, "filters": [130], "steps": 4, "objective": {"kind": "class", "class": 130, "probability": True}}
    )
    (probable,) = ascend_spec(engine, spec, spec.filters, batch_size=1)
    assert probable.start_loss is not None and max(probable.start_loss, probable.loss) < 0
    assert probable.loss != runs[0].loss and not np.array_equal(probable.image, runs[0].image)


@pytest.mark.unit
def test_a_diversity_job_costs_and_stores_n_pictures_a_filter():
    plain = parse_spec(FOURIER)
    diverse = parse_spec({**FOURIER, "objective": [{"kind": "channel"}, {"kind": "diversity", "n": 3}]})
    assert (plain.pictures_per_filter, diverse.pictures_per_filter) == (1, 3)
    assert job_cost(diverse).flops == 3 * job_cost(plain).flops
    grid_bytes = plain.grid_side**2 * 3
    assert job_cost(diverse).output_bytes - grid_bytes == 3 * (job_cost(plain).output_bytes - grid_bytes)


@pytest.mark.engine
def test_diversity_compares_a_filters_other_pictures_and_never_its_own_crops():
    from keras import ops

    from worker.engine.objectives import Rows, objective_values

    # Rows: filter 0's pictures 0 and 1 (two crops each), filter 1's picture 2. Pictures 0 and 2 have
    # the same pattern; picture 1 another.
    same, other = np.ones((1, 2, 2, 2), np.float32), np.array([[[[1, 0], [0, 1]], [[1, 0], [0, 1]]]], np.float32)
    activations = ops.convert_to_tensor(np.concatenate([same, same, other, other, same]))
    rows = Rows(ops.convert_to_tensor([0, 0, 0, 0, 1]), ops.convert_to_tensor([0, 0, 1, 1, 2]))
    values = np.asarray(objective_values(activations, rows, [{"kind": "diversity", "weight": 1.0, "n": 2}]))
    # Gram(same) = 2*ones(2,2), Gram(other) = 2*I: cosine similarity 1/sqrt(2); a filter alone has nothing to
    # be apart from (0), whatever its crops look like.
    np.testing.assert_allclose(values, [-(0.5**0.5)] * 4 + [0.0], rtol=1e-6)


@pytest.mark.engine
def test_a_diversity_jobs_pictures_lie_side_by_side_and_its_first_is_the_plain_jobs_without_its_push(engine):
    from worker.render import ascend_spec

    spec = {**FOURIER, "steps": 6}
    plain_spec = parse_spec(spec)
    unpushed_spec = parse_spec({**spec, "objective": [{"kind": "channel"}, {"kind": "diversity", "n": 3, "weight": 0}]})
    plain = ascend_spec(engine, plain_spec, plain_spec.filters, batch_size=6)
    unpushed = ascend_spec(engine, unpushed_spec, unpushed_spec.filters, batch_size=6)
    assert [a.image.shape for a in unpushed] == [(32, 96, 3)] * 2
    for alone, three in zip(plain, unpushed, strict=True):
        # The first of three starts from the plain job's noise and, unpushed, rises the same way.
        np.testing.assert_allclose(three.image[:, :32], alone.image, atol=0.05)
        assert not np.allclose(three.image[:, 32:64], three.image[:, :32], atol=1.0)


@pytest.mark.engine
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o["kind"] if isinstance(o, dict) else "sum")
def test_each_objective_rises_from_the_start_to_the_final_picture(engine, objective):
    from worker.render import ascend_spec

    spec = parse_spec({**FOURIER, "objective": objective, "steps": 12})
    for ascent in ascend_spec(engine, spec, spec.filters, batch_size=2):
        assert ascent.start_loss is not None and ascent.loss > ascent.start_loss, (objective, ascent)
