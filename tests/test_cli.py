"""`filterviz` as a user runs it: a real subprocess writing a folder, and one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

SMALL = ["--layer", "block3_conv1", "--filters", "0-11", "--size", "32", "--steps", "3", "--grid", "3",
         "--margin", "2", "--seed", "5", "--weights", "random:3"]  # fmt: skip


def filterviz(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.mark.engine  # renders with VGG16
def test_render_writes_grid_filter_pictures_and_manifest(tmp_path):
    out = tmp_path / "out"
    result = filterviz("render", *SMALL, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "rendered 12/12 filters" in result.stderr  # plain progress lines when not on a terminal

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "random:3"
    assert manifest["params"]["filters"] == list(range(12))
    assert manifest["params"]["seed"] == 5
    assert {"tensorflow", "keras", "numpy", "device"} <= manifest["runtime"].keys()
    assert [f["index"] for f in manifest["filters"]] == list(range(12))
    live = sorted((f for f in manifest["filters"] if not f["dead"]), key=lambda f: -f["loss"])
    assert manifest["grid"]["order"] == [f["index"] for f in live[:9]]

    assert Image.open(out / "grid.png").size == (3 * 32 + 2 * 2, 3 * 32 + 2 * 2)
    for k in range(12):
        assert Image.open(out / "filters" / f"{k}.png").size == (32, 32)


@pytest.mark.engine  # renders with VGG16
def test_render_by_another_method_records_it_and_its_parameters(tmp_path):
    out = tmp_path / "out"
    result = filterviz("render", *SMALL, "--method", "maco", "--param", "crops=2", "--param", "pre_relu=false",
                       "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["method"] == "maco"
    assert manifest["params"]["method_params"]["crops"] == 2
    assert manifest["params"]["method_params"]["pre_relu"] is False
    assert manifest["params"]["method_params"]["noise"] == 0.04  # defaults are recorded too
    assert all(isinstance(f["revived"], bool) for f in manifest["filters"])
    assert Image.open(out / "filters" / "0.png").size == (32, 32)


def test_layers_lists_every_conv_layer_with_its_filter_count():
    result = filterviz("layers")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 13
    assert lines[0].split()[:2] == ["block1_conv1", "64"]
    assert lines[-1].split()[:2] == ["block5_conv3", "512"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--layer", "block6_conv1"],
            "unknown layer 'block6_conv1' for vgg16; `filterviz layers --model NAME` lists a model's layers",
        ),
        (["--layer", "block1_conv1", "--filters", "60-70"], "filter 70 is out of range"),
        (["--filters", "1-x"], "bad filter list"),
        (["--size", "8"], "image_size 8 is too small for block5_conv1"),
        (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
        (["--steps", "many"], "invalid int value"),
        # these two import TensorFlow to look at the weights
        pytest.param(
            ["--weights", "/nonexistent/vgg16.h5"],
            "weights file /nonexistent/vgg16.h5 does not exist",
            marks=pytest.mark.engine,
        ),
        pytest.param(["--weights", "{junk}"], "could not be loaded", marks=pytest.mark.engine),
        (["--batch-size", "0"], "batch-size: must be at least 1"),
        (["--method", "paint"], "invalid choice: 'paint'"),
        (
            ["--method", "fourier", "--param", "jitter=-1"],
            "method_params.jitter: Input should be greater than or equal to 0",
        ),
        (["--param", "crops"], "bad method parameter 'crops'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"junk")
    args = [a.replace("{junk}", str(junk)) for a in args]
    out = tmp_path / "out"
    result = filterviz("render", "--filters", "0-3", "--size", "32", "--steps", "1", *args, "--out", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not out.exists()


def test_version_is_the_package_version():
    from shared.version import package_version

    result = filterviz("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"filterviz {package_version()}"
    assert package_version() != "unknown"
