"""VGG16 with the weights a worker was told to use, and the identity of those weights.

A weights source is one of:
  imagenet         Keras' ImageNet no-top file, from FILTERVIZ_IMAGENET_WEIGHTS or Keras' cache
  random:<seed>    seeded random weights, for tests and offline runs
  <path>           a weights file (.weights.h5 saved by Keras, or the legacy .h5 format)
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

# Where the ImageNet file is expected lives with its download, which needs no TensorFlow.
from worker.weights_fetch import IMAGENET_NOTOP_FILE, imagenet_weights_path


class WeightsError(Exception):
    """The requested weights can't be loaded; the message says how to fix that."""


@dataclass(frozen=True)
class LoadedModel:
    """VGG16 without its top, and which weights it carries (e.g. 'imagenet:<sha256>', 'random:1')."""

    network: keras.Model
    weights: str


def load_vgg16(source: str, imagenet_path: str | None = None) -> LoadedModel:
    """Build VGG16 (no top, any input size) carrying the weights named by `source`.

    Never falls back to other weights: a source that can't be loaded raises WeightsError.
    """
    network = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    if source.startswith("random:"):
        seed = _parse_random_seed(source)
        _fill_random(network, seed)
        return LoadedModel(network, f"random:{seed}")
    if source == "imagenet":
        path = imagenet_weights_path(imagenet_path)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights not found at {path}. Run `filterviz weights fetch` (on a machine with "
                f"internet, then copy {IMAGENET_NOTOP_FILE} there), or set FILTERVIZ_IMAGENET_WEIGHTS to its path; "
                "for a trial run, FILTERVIZ_WEIGHTS=random:1."
            )
        _load_file(network, path)
        return LoadedModel(network, f"imagenet:{file_sha256(path)}")
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"weights file {source} does not exist (expected 'imagenet', 'random:<seed>' or a path)")
    _load_file(network, path)
    return LoadedModel(network, f"file:{file_sha256(path)}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (weights files are over 50 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_random_seed(source: str) -> int:
    try:
        return int(source.removeprefix("random:"))
    except ValueError:
        raise WeightsError(f"bad weights source {source!r}: expected random:<integer seed>") from None


def _fill_random(network: keras.Model, seed: int) -> None:
    # He-normal kernels and zero biases from our own generator: the same seed gives the same
    # weights whatever Keras' initialisers or global seeds do.
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:-1])
            kernel = rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)
            layer.set_weights([kernel.astype(np.float32), np.zeros_like(bias)])


def _load_file(network: keras.Model, path: Path) -> None:
    try:
        network.load_weights(path)
    except Exception as error:  # h5py, OSError and Keras' ValueError all mean "not usable weights"
        raise WeightsError(f"weights file {path} could not be loaded as VGG16 weights: {error}") from None
