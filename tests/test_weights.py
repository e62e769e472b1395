"""Weights: seeded random, from a file path, and ImageNet that is missing (never a silent fallback)."""

import numpy as np
import pytest

from shared.spec import parse_spec
from worker.engine import AscentEngine
from worker.model import WeightsError, file_sha256, load_network
from worker.render import render


def test_random_weights_are_seeded():
    a, b, c = load_network("random:7"), load_network("random:7"), load_network("random:8")
    assert a.weights == "random:7"
    kernel = lambda m: m.network.get_layer("block3_conv1").get_weights()[0]  # noqa: E731
    assert np.array_equal(kernel(a), kernel(b))
    assert not np.array_equal(kernel(a), kernel(c))


def test_weights_file_gives_the_same_pictures_as_the_model_it_was_saved_from(loaded_model, engine, tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    loaded_model.network.save_weights(path)
    from_file = load_network(str(path))
    assert from_file.weights == f"file:{file_sha256(path)}"

    spec = parse_spec({"layer": "block3_conv3", "filters": list(range(6)), "image_size": 32, "steps": 3, "seed": 9})
    in_memory = render(engine, spec, loaded_model.weights, batch_size=6)
    loaded = render(AscentEngine(from_file.network), spec, from_file.weights, batch_size=6)
    assert (in_memory.grid == loaded.grid).all()
    assert [f.loss for f in in_memory.filters] == [f.loss for f in loaded.filters]


def test_missing_imagenet_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="FILTERVIZ_IMAGENET_WEIGHTS"):
        load_network("imagenet")
    with pytest.raises(WeightsError, match="not found"):
        load_network("imagenet", str(tmp_path / "elsewhere.h5"))


def test_unreadable_weights_file_is_an_error(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="could not be loaded"):
        load_network(str(junk))
    with pytest.raises(WeightsError, match="does not exist"):
        load_network(str(tmp_path / "absent.h5"))
    with pytest.raises(WeightsError, match="random:<integer seed>"):
        load_network("random:abc")
