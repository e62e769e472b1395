"""A network of shared/models.py with the weights a worker was told to use, and their identity.

A weights source is one of:
  imagenet         Keras' ImageNet file of that network (without its top, or with it for a network
                   carrying its classifier), from Keras' cache (VGG16's from FILTERVIZ_IMAGENET_WEIGHTS
                   where set)
  random:<seed>    seeded random weights, for tests and offline runs
  <path>           a weights file (.weights.h5 saved by Keras, or the legacy .h5 format); for a network
                   carrying its classifier, with or without it (a fine-tuned network's own top is left
                   out): without it, the network has no `logits` layer

An uploaded whole model (shared/model_uploads.py) is its own `.keras` file, loaded with safe_mode.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from shared.models import ARCHITECTURES, DEFAULT_MODEL
from worker.architectures import build

# Where the ImageNet file is expected lives with its download, which needs no TensorFlow.
from worker.weights_fetch import imagenet_weights_path

# The layers whose kernels random weights fill.
KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)


class WeightsError(Exception):
    """The requested weights can't be loaded; the message says how to fix that."""


@dataclass(frozen=True)
class LoadedModel:
    """A network (without its top, or ending in its classifier's logits), and which weights it carries
    (e.g. 'imagenet:<sha256>', 'random:1')."""

    network: keras.Model
    weights: str


def load_network(source: str, imagenet_path: str | None = None, model: str = DEFAULT_MODEL) -> LoadedModel:
    """Build `model` (any input size) carrying the weights named by `source`.

    Never falls back to other weights: a source that can't be loaded raises WeightsError.
    """
    if model not in ARCHITECTURES:
        path = Path(source)
        return LoadedModel(_load_keras(path), f"file:{file_sha256(path)}")
    architecture = ARCHITECTURES[model]
    if source.startswith("random:"):
        seed = _parse_random_seed(source)
        network = build(architecture)
        _fill_random(network, seed)
        return LoadedModel(network, f"random:{seed}")
    if source == "imagenet":
        path = imagenet_weights_path(imagenet_path, model)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights of {model} not found at {path}. Run `filterviz weights fetch --model {model}` (on a "
                f"machine with internet, then copy {architecture.weights_file} there), or for VGG16 set "
                "FILTERVIZ_IMAGENET_WEIGHTS to its path; "
                "for a trial run, FILTERVIZ_WEIGHTS=random:1."
            )
        return LoadedModel(_load_file(path, model), f"imagenet:{file_sha256(path)}")
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"weights file {source} does not exist (expected 'imagenet', 'random:<seed>' or a path)")
    return LoadedModel(_load_file(path, model), f"file:{file_sha256(path)}")


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
    # weights whatever Keras' initialisers or global seeds do. Normalisation statistics and scales
    # keep their initial values, which are constants.
    rng = np.random.default_rng(seed)
    for layer in network._flatten_layers(include_self=False, recursive=True):
        for variable in layer.weights if isinstance(layer, KERNEL_LAYERS) else ():
            name = variable.path.rsplit("/", 1)[-1]
            if name.endswith("kernel"):
                shape = tuple(variable.shape)
                # A depthwise kernel sums over its window only; the others over window and channels.
                depthwise = name == "depthwise_kernel" or isinstance(layer, keras.layers.DepthwiseConv2D)
                fan_in = np.prod(shape[:2] if depthwise else shape[:-1])
                variable.assign((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            elif name == "bias":
                variable.assign(np.zeros(variable.shape, np.float32))


def _load_file(path: Path, model: str) -> keras.Model:
    """The network built to fit the file: with its classifier where the architecture carries one and the
    file holds it, else without."""
    architecture = ARCHITECTURES[model]
    for classifier in (True, False) if architecture.classifier else (False,):
        network = build(architecture, classifier=classifier)
        try:
            network.load_weights(path)
            return network
        except Exception as error:  # h5py, OSError and Keras' ValueError all mean "not usable weights"
            problem = error
    raise WeightsError(f"weights file {path} could not be loaded as {model} weights: {problem}") from None


def _load_keras(path: Path) -> keras.Model:
    """A whole model from its `.keras` file, refusing (safe_mode) any code the file would run."""
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises what its deserialisation meets: all mean "not loadable"
        raise WeightsError(f"the model {path.name} could not be loaded: {str(error)[:500]}") from None
    if not isinstance(network, keras.Model) or not network.inputs:
        raise WeightsError(f"the model {path.name} is not a built functional or Sequential model")
    return network
