"""Every network of shared/models.py: its table is what Keras builds, its preprocessing is Keras' own,
a job renders on it, and a worker keeps only the models its memory holds."""

import json

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from shared.layers import conv_layers
from shared.models import ARCHITECTURES, TABLES
from shared.numerics import WeightsUnavailable
from shared.settings import Settings

pytestmark = pytest.mark.engine  # builds networks


def test_the_tables_are_what_the_networks_say():
    from worker.architectures import tables

    # `python -m worker.architectures` writes them again after a change to shared/models.py.
    assert json.loads(json.dumps(tables())) == json.loads(TABLES.read_text())


@pytest.mark.parametrize(("kind", "module"), [("caffe", "vgg16"), ("tf", "resnet_v2"), ("torch", "densenet")])
def test_preprocessing_is_what_keras_applications_does(kind, module):
    import keras

    from worker.engine.network import preprocess

    rgb = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = getattr(keras.applications, module).preprocess_input(rgb.copy())
    assert np.allclose(np.asarray(preprocess(kind, rgb)), expected, atol=1e-4)


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_every_model_renders_a_job_on_random_weights(model, tmp_path):
    layers = conv_layers(model)
    layer = layers[len(layers) // 2]
    size = max(32, layer.min_image_size)
    args = ["render", "--model", model, "--layer", layer.name, "--filters", "0-3", "--size", str(size), "--method",
            "fourier", "--steps", "2", "--grid", "2", "--weights", "random:1", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["params"]["model"], manifest["params"]["layer"]) == (model, layer.name)
    assert [entry["index"] for entry in manifest["filters"]] == [0, 1, 2, 3]
    assert all(np.isfinite(entry["loss"]) for entry in manifest["filters"])
    assert Image.open(tmp_path / "filters" / "0.png").size == (size, size)


def test_a_classifier_loads_keras_file_with_its_top_and_a_fine_tuned_file_without_it(tmp_path):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from worker.model import load_network

    # Keras' ImageNet file is the whole network in Keras 2's format: one like it, of random weights
    # (positive, so that the normalisations' variances are).
    full = keras.applications.MobileNetV2(include_top=True, weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    for variable in full.weights:
        variable.assign(rng.uniform(0.5, 1.0, variable.shape).astype(np.float32) * 0.05)
    with h5py.File(tmp_path / "top.h5", "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, full)
    loaded = load_network(str(tmp_path / "top.h5"), model="mobilenet_v2").network
    pixels = rng.uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    logits = np.asarray(loaded(pixels, training=False)).reshape(2, 1000)
    np.testing.assert_allclose(logits, np.asarray(full(pixels, training=False)), rtol=1e-5)
    # A fine-tuned network's weights, without the top: the network has no logits then.
    body = keras.applications.MobileNetV2(include_top=False, weights=None)
    body.save_weights(tmp_path / "body.weights.h5")
    without = load_network(str(tmp_path / "body.weights.h5"), model="mobilenet_v2").network
    assert without.layers[-1].name == "out_relu"
    np.testing.assert_array_equal(without(pixels, training=False), body(pixels, training=False))


def test_the_default_layer_of_a_model_is_its_own(tmp_path):
    args = ["render", "--model", "resnet50", "--filters", "0", "--size", "32", "--steps", "1", "--grid", "1",
            "--weights", "random:1", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["params"]["layer"] == "conv4_block1_out"


def test_a_worker_keeps_the_models_its_memory_holds_and_drops_the_least_recently_used():
    from worker.loading import Engines, model_megabytes

    # Room for VGG16 (57 MB) or ResNet50 (90 MB), not both.
    budget = max(model_megabytes("vgg16"), model_megabytes("resnet50")) + 8
    engines = Engines(Settings(weights="random:1", model_memory_mb=budget))
    assert engines.loaded == [("vgg16", None)]  # the deployment's weights
    for model in ("resnet50", "vgg16", "resnet50"):
        engine = engines.get(model).engine
        assert engines.loaded == [(model, None)] and engine.model == model
        assert len(engine.ascend(conv_layers(model)[0].name, [0], image_size=32, steps=1, step_size=1.0, seed=0,
                                 batch_size=1)) == 1  # fmt: skip
    with pytest.raises(WeightsUnavailable, match="convnext_tiny needs 107 MB of weights; this worker keeps"):
        engines.get("convnext_tiny")
