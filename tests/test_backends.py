"""Keras backends and precisions: `seed` paints the same pictures on TensorFlow and JAX, every method
runs on JAX, bfloat16 stays close to float32, and the manifest says which backend and precision.

KERAS_BACKEND is process-wide, so each backend runs in its own process (bench/gpu.py at tiny sizes,
or the CLI) and the tests compare what they saved.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest

from shared.methods import FOURIER, MACO, METHODS
from worker.engine.backend import BackendError, requested_backend, select_backend
from worker.engine.precision import AUTO, BFLOAT16, FLOAT32, TENSORFLOAT32, convolution_arithmetic, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--filters", "4", "--size", "32", "--steps", "4", "--layer", "block2_conv1", "--weights", "random:1"]
# float32 on both backends: XLA and TensorFlow's oneDNN sum in different orders, so the pictures
# (0..255 scale) agree to a few hundredths, the losses to a part in a thousand.
PICTURE_TOLERANCE = 0.05
LOSS_TOLERANCE = 1e-3
# bfloat16 has 8 bits of mantissa: a tiny random network's final losses move by a few percent.
BF16_LOSS_TOLERANCE = 0.05


def run_bench(backend: str, methods: list[str], precisions: list[str], out: Path) -> list[dict]:
    """bench/gpu.py in one child process on `backend`; its records (pictures and losses under `out`)."""
    command = [
        sys.executable, "-m", "bench.gpu", "--backend", backend, "--methods", ",".join(methods),
        "--precisions", ",".join(precisions), "--same-process", "--save", str(out), *TINY,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "FILTERVIZ_BACKEND")}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tf_out, jax_out = tmp_path_factory.mktemp("tensorflow"), tmp_path_factory.mktemp("jax")
    # Side by side: XLA compiles on one thread, and the JAX run is mostly compiling.
    with ThreadPoolExecutor(2) as pool:
        tensorflow = pool.submit(run_bench, "tensorflow", ["seed"], [FLOAT32, BFLOAT16], tf_out)
        jax = pool.submit(run_bench, "jax", list(METHODS), [FLOAT32, BFLOAT16], jax_out)
        tensorflow.result(), jax.result()
    return {"tensorflow": tf_out, "jax": jax_out}


def saved(folder: Path, precision: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = np.load(folder / f"{precision}-{method}.npz")
    return arrays["images"], arrays["losses"]


def test_seed_pictures_agree_across_backends(runs):
    tf_images, tf_losses = saved(runs["tensorflow"], FLOAT32, "seed")
    jax_images, jax_losses = saved(runs["jax"], FLOAT32, "seed")
    assert tf_images.shape == jax_images.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(jax_images, tf_images, atol=PICTURE_TOLERANCE)
    np.testing.assert_allclose(jax_losses, tf_losses, rtol=LOSS_TOLERANCE, atol=LOSS_TOLERANCE)
    # The ascent moved the pictures: agreeing is not agreeing on the starting noise.
    assert np.abs(tf_images - tf_images.mean(axis=(1, 2, 3), keepdims=True)).max() > 10


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_on_jax(runs, method):
    images, losses = saved(runs["jax"], FLOAT32, method)
    assert images.shape == (4, 32, 32, 3)
    assert np.isfinite(images).all() and np.isfinite(losses).all()
    if method in (FOURIER, MACO):  # a sigmoid paints them
        assert images.min() >= 0 and images.max() <= 255
    # Four filters, four different pictures.
    assert len({image.tobytes() for image in images}) == 4


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_bfloat16_final_losses_stay_close_to_float32(runs, backend):
    _, exact = saved(runs[backend], FLOAT32, "seed")
    images, low = saved(runs[backend], BFLOAT16, "seed")
    assert images.dtype == np.float32  # the image and its update stay float32
    assert not np.array_equal(low, exact)  # the network really computed in bfloat16
    np.testing.assert_allclose(low, exact, rtol=BF16_LOSS_TOLERANCE, atol=1e-3)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_on_jax_in_bfloat16(runs, method):
    # jaxlib 0.11's XLA:CPU turned a bfloat16 convolution followed by a max-pool into NaNs and garbage
    # under jit (fourier's final losses were all NaN): this catches such an upgrade.
    _, exact = saved(runs["jax"], FLOAT32, method)
    images, low = saved(runs["jax"], BFLOAT16, method)
    assert np.isfinite(images).all() and np.isfinite(low).all()
    relative = np.abs(low - exact) / np.maximum(np.abs(exact), 1e-3)
    assert np.median(relative) <= BF16_LOSS_TOLERANCE


@pytest.mark.engine  # renders with VGG16
def test_manifest_records_backend_and_precision(tmp_path):
    env = dict(os.environ, FILTERVIZ_BACKEND="jax", FILTERVIZ_PRECISION=BFLOAT16)
    command = [
        sys.executable, "-m", "cli", "render", "--layer", "block1_conv2", "--filters", "0-1", "--size", "32",
        "--steps", "2", "--seed", "1", "--weights", "random:1", "--out", str(tmp_path),
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    runtime = json.loads((tmp_path / "manifest.json").read_text())["runtime"]
    assert runtime["backend"] == "jax"
    assert runtime["precision"] == BFLOAT16
    assert runtime["convolutions"] == BFLOAT16  # no GPU here, so no TensorFloat-32
    assert runtime["jax"]


def test_auto_precision_is_bfloat16_only_where_the_hardware_has_it():
    assert resolve_precision(AUTO, None, frozenset({"avx2", "avx512_bf16"})) == BFLOAT16
    assert resolve_precision(AUTO, None, frozenset({"amx_bf16"})) == BFLOAT16
    assert resolve_precision(AUTO, None, frozenset({"avx2", "avx512f"})) == FLOAT32
    assert resolve_precision(AUTO, (9, 0), frozenset()) == BFLOAT16  # H100
    assert resolve_precision(AUTO, (7, 5), frozenset({"avx512_bf16"})) == FLOAT32  # T4: the GPU computes
    assert resolve_precision(FLOAT32, (9, 0), frozenset({"amx_bf16"})) == FLOAT32
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", None, frozenset())


def test_float32_convolutions_are_tensorfloat32_on_ampere_and_later_gpus():
    assert convolution_arithmetic(FLOAT32, (9, 0)) == TENSORFLOAT32  # H100
    assert convolution_arithmetic(FLOAT32, (7, 5)) == FLOAT32  # T4
    assert convolution_arithmetic(FLOAT32, None) == FLOAT32  # CPU
    assert convolution_arithmetic(BFLOAT16, (9, 0)) == BFLOAT16


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv("FILTERVIZ_BACKEND", raising=False)
    assert requested_backend() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert requested_backend() == "jax"
    monkeypatch.setenv("FILTERVIZ_BACKEND", "tensorflow")
    assert requested_backend() == "tensorflow"  # FILTERVIZ_BACKEND wins
    monkeypatch.setenv("FILTERVIZ_BACKEND", "torch")
    with pytest.raises(BackendError, match="not supported"):
        requested_backend()
    # This process imported keras on TensorFlow: asking for JAX now is refused, not ignored.
    monkeypatch.setenv("FILTERVIZ_BACKEND", "jax")
    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(BackendError, match="before"):
        select_backend()
