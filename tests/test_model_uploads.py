"""Whole Keras models: the table read from an upload's config agrees with the network Keras loads, what
is refused says why, and the engine renders the loaded model at sizes other than the one it was saved for."""

import json
import math
import pickle

import numpy as np
import pytest

from shared.layers import use_uploaded_models
from shared.model_uploads import inspect_model, table_from_json, table_json
from shared.uploads import UploadRefused
from tests import keras_files
from tests.keras_files import archive

pytestmark = pytest.mark.engine
MODEL_ID = "upload:" + "ab" * 32
MEGABYTE = 2**20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return keras_files.small_cnn(tmp_path_factory.mktemp("models") / "flowers.keras")


def test_the_table_read_from_the_config_matches_the_loaded_network(saved):
    import keras

    table = inspect_model(saved.read_bytes(), "none", 10 * MEGABYTE, 2048).table
    network = keras.saving.load_model(saved, compile=False, safe_mode=True)
    assert [(layer.name, layer.filters, layer.convolutions) for layer in table.layers] == [
        ("edges", 8, 1),
        ("parts", 16, 2),
        ("mixed", 16, 3),
    ]
    for layer in table.layers:
        shape = network.get_layer(layer.name).output.shape
        # The input's shrink factor, to the nearest power of two (as for the built-in networks).
        assert layer.filters == shape[-1] and layer.downsampling == 2 ** round(math.log2(keras_files.SIDE / shape[1]))
        # A valid-padded convolution: below the saved side a layer might come out empty.
        assert layer.min_image_size == keras_files.SIDE
    # 3x3x3x8; separable 3x3x8 + 8x16; depthwise 3x3x16.
    assert [conv.macs_per_pixel for conv in table.convolutions] == [216, 200, 144]
    assert table.parameters == network.count_params()
    assert table_from_json(table_json(table)) == table


def _odd_conv_config() -> bytes:
    """A hand-made config: a convolution without a name."""
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 3]}},
              {"class_name": "Conv2D", "build_config": {"input_shape": [None, 8, 8, 3]},
               "config": {"filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "dilation_rate": [1, 1],
                          "padding": "same"}}]  # fmt: skip
    return json.dumps({"class_name": "Functional", "config": {"layers": layers}}).encode()


def _deep_lambda(depth: int) -> str:
    """A Lambda layer deep inside nested lists, past where a recursive walk would overflow."""
    return "[" * depth + '{"class_name": "Lambda"}' + "]" * depth


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda path: keras_files.with_lambda(path).read_bytes(), "Lambda layer"),
        (lambda path: keras_files.with_custom_layer(path).read_bytes(), "custom object (mine>Doubled)"),
        (lambda path: keras_files.dense_only(path).read_bytes(), "no convolution layer"),
        (lambda path: keras_files.grey(path).read_bytes(), "takes 1 channels"),
        (lambda path: keras_files.any_size(path).read_bytes(), "fixed size"),
        (lambda path: keras_files.with_members(keras_files.small_cnn(path), {"../evil.py": b"x"}), "outside it"),
        (lambda path: keras_files.with_members(keras_files.small_cnn(path), {"w.pkl": pickle.dumps(1)}), "pickled"),
        (lambda path: keras_files.with_members(keras_files.small_cnn(path), {"run.py": b"x"}), "not part of a Keras"),
        (lambda path: b"PK\x03\x04 and then nothing", "broken zip"),
        (
            lambda path: archive({"config.json": b"[" * 100_000 + b"]" * 100_000, "model.weights.h5": b""}),
            "config.json can't be read",
        ),
        (
            lambda path: archive({"config.json": _deep_lambda(500).encode(), "model.weights.h5": b""}),
            "Lambda layer",
        ),
        (
            lambda path: archive(
                {
                    "config.json": _odd_conv_config(),
                    "model.weights.h5": keras_files.weights_of(keras_files.small_cnn(path)),
                }
            ),
            "not a Keras model's config",
        ),
    ],
)
def test_unfit_models_are_refused_saying_why(tmp_path, make, words):
    with pytest.raises(UploadRefused, match=words.replace("(", r"\(").replace(")", r"\)")):
        inspect_model(make(tmp_path / "model.keras"), "none", 10 * MEGABYTE, 2048)


def test_weights_unpacking_past_the_limit_and_layers_past_the_widest_are_refused(saved):
    with pytest.raises(UploadRefused, match="unpack to over 0 MB"):
        inspect_model(saved.read_bytes(), "none", 1000, 2048)
    with pytest.raises(UploadRefused, match="'parts' has 16 channels; at most 8"):
        inspect_model(saved.read_bytes(), "none", 10 * MEGABYTE, 8)


@pytest.fixture
def uploaded(saved):
    """The small CNN as this process's upload MODEL_ID."""
    table = inspect_model(saved.read_bytes(), "tf", 10 * MEGABYTE, 2048).table
    use_uploaded_models(lambda model: table if model == MODEL_ID else None)
    yield saved
    use_uploaded_models(lambda model: None)


@pytest.mark.parametrize("method", ["seed", "fourier"])
def test_the_engine_renders_an_uploaded_model_at_any_size(uploaded, method):
    from shared.methods import METHODS
    from worker.engine import AscentEngine
    from worker.model import load_network

    loaded = load_network(str(uploaded), model=MODEL_ID)
    assert loaded.weights.startswith("file:")
    engine = AscentEngine(loaded.network, MODEL_ID)
    # 48 px: not the 32 it was saved for, and its head (Flatten, Dense) fits only 32.
    found = engine.ascend("parts", [0, 3], image_size=48, steps=3, step_size=METHODS[method].step_size, seed=1,
                          batch_size=2, method=method)  # fmt: skip
    assert [result.index for result in found] == [0, 3]
    pictures = [result.image for result in found]
    assert all(picture.shape == (48, 48, 3) for picture in pictures)
    assert not np.array_equal(pictures[0], pictures[1])


def test_a_dense_layer_on_every_pixel_is_priced_as_a_1x1_convolution_and_not_shown(tmp_path):
    import keras

    path = tmp_path / "pointwise.keras"
    keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, padding="same", name="first"),
                      keras.layers.Dense(6, name="pointwise"), keras.layers.Conv2D(5, 3, padding="same", name="last")]
                     ).save(path)  # fmt: skip
    table = inspect_model(path.read_bytes(), "none", 10 * MEGABYTE, 2048).table
    assert [(layer.name, layer.convolutions) for layer in table.layers] == [("first", 1), ("last", 3)]
    assert [(conv.macs_per_pixel, conv.channels) for conv in table.convolutions] == [(108, 4), (24, 6), (270, 5)]


def test_the_worker_refuses_code_in_a_model_even_if_it_reached_the_bucket(tmp_path):
    from worker.model import WeightsError, load_network

    # Defence in depth: Keras' safe_mode on the worker refuses what the API would have.
    with pytest.raises(WeightsError, match=r"could not be loaded.*(?i:lambda)"):
        load_network(str(keras_files.with_lambda(tmp_path / "hostile.keras")), model=MODEL_ID)
