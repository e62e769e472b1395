"""Your own weights and your own network, on the real service: an upload round trip (a job with them,
then the same job with the deployment's to compare), a whole Keras model rendered, and hostile uploads
refused with nothing stored."""

import hashlib
import http.client
import io
import json
import pickle
import time
from urllib.parse import urlsplit

import h5py
import numpy as np
import pytest
import requests

from shared.storage import Storage
from shared.uploads import UPLOAD_PREFIX, may_use, upload_sha256
from tests import keras_files
from tests.conftest import TEST_WEIGHTS
from tests.keras_files import archive
from tests.service_helpers import fetch_png, submit, wait_for

JOB = {"layer": "block2_conv1", "filters": {"start": 0, "stop": 4}, "image_size": 32, "steps": 3, "seed": 7,
       "grid": {"n": 2}}  # fmt: skip


@pytest.fixture(scope="module")
def api(service_stack):
    return service_stack.api_url


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """A fine-tuned VGG16, as far as the service can tell (seeded random weights saved by Keras), and
    ResNet50's, saved the same way."""
    from worker.model import load_network

    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for model in ("vgg16", "resnet50"):
        files[model] = folder / f"{model}.weights.h5"
        load_network("random:5", model=model).network.save_weights(files[model])
    return files


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    """A user's own CNN, saved whole for 32x32 pictures."""
    return keras_files.small_cnn(tmp_path_factory.mktemp("keras") / "flowers.keras")


def upload(api: str, data: bytes, architecture: str = "vgg16", **fields: str) -> requests.Response:
    form = {"architecture": architecture, **fields}
    return requests.post(f"{api}/v1/models", data=form, files={"file": ("weights.h5", data)}, timeout=60)


def stored_uploads(stack) -> list[str]:
    return Storage(stack.settings).list_keys(UPLOAD_PREFIX)


def test_uploaded_weights_render_a_job_beside_the_deployments(api, service_stack, weights_files):
    data = weights_files["vgg16"].read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    answer = upload(api, data, name="fine-tuned on flowers")
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert (record["id"], record["architecture"], record["name"]) == (
        f"upload:{sha256}",
        "vgg16",
        "fine-tuned on flowers",
    )
    assert record["parameters"] == 14_714_688 and record["bytes"] == len(data)
    assert requests.get(f"{api}{answer.headers['Location']}", timeout=10).json() == record
    again = upload(api, data)  # content-addressed: kept once
    assert again.status_code == 201 and again.json()["id"] == record["id"]
    # Other modules on the session stack upload their own: these are the ones of this file's bytes.
    assert sorted(key for key in stored_uploads(service_stack) if sha256 in key) == [
        f"{UPLOAD_PREFIX}{sha256}.json",
        f"{UPLOAD_PREFIX}{sha256}.weights.h5",
    ]

    own = submit(api, {**JOB, "weights": record["id"]})
    deployments = submit(api, JOB)
    for job in (own, deployments):
        done = wait_for(api, job["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done["error"]
    manifests = [
        requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json() for job in (own, deployments)
    ]
    assert [manifest["weights"] for manifest in manifests] == [f"file:{sha256}", TEST_WEIGHTS]
    assert manifests[0]["params"]["weights"] == record["id"]
    # Before and after: the same filters, seed and steps under the two weights paint other pictures.
    grids = [fetch_png(f"{api}/v1/jobs/{job['id']}/grid.png") for job in (own, deployments)]
    assert grids[0].shape == grids[1].shape and not np.array_equal(grids[0], grids[1])


def test_a_job_naming_weights_it_cannot_use_is_a_422_naming_weights(api, weights_files):
    record = upload(api, weights_files["vgg16"].read_bytes()).json()
    for body, words in [
        ({**JOB, "weights": "upload:" + "0" * 64}, "no upload"),
        ({**JOB, "model": "resnet50", "layer": "conv2_block1_out", "weights": record["id"]}, "holds vgg16 weights"),
        ({**JOB, "weights": "imagenet"}, "should match pattern"),
    ]:
        answer = requests.post(f"{api}/v1/jobs", json=body, timeout=10)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["problems"][0]["field"] == "weights" and words in answer.text


def _hdf5_of_strings() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as weights:
        weights.create_dataset("layers/payload", data=np.array([b"cos\nsystem\n(S'id'\ntR."], dtype=object),
                               dtype=h5py.string_dtype())  # fmt: skip
    return buffer.getvalue()


LAMBDA_CONFIG = json.dumps({"class_name": "Functional", "config": {"layers": [{"class_name": "Lambda"}]}}).encode()


@pytest.mark.parametrize(
    ("make", "architecture", "words"),
    [
        (lambda files: files["resnet50"].read_bytes(), "vgg16", "vgg16 without its top holds 14,714,688"),
        (lambda files: pickle.dumps({"weights": [1.0, 2.0]}), "vgg16", "pickled"),
        (lambda files: _hdf5_of_strings(), "vgg16", "only floating-point weights"),
        (lambda files: b"not weights at all", "vgg16", "not a Keras weights file"),
        (lambda files: archive({"../../etc/cron.d/x": b"* * * * * root sh"}), "vgg16", "outside it"),
        (
            lambda files: archive({"config.json": LAMBDA_CONFIG, "model.weights.h5": b""}),
            "vgg16",
            "Lambda layer",
        ),
        (lambda files: archive({"payload.pkl": pickle.dumps(1)}), "vgg16", "pickled or NumPy"),
        (lambda files: files["vgg16"].read_bytes(), "vgg17", "architecture: one of"),
    ],
)
def test_hostile_uploads_are_refused_naming_why_and_nothing_is_stored(
    api, service_stack, weights_files, make, architecture, words
):
    before = stored_uploads(service_stack)
    answer = upload(api, make(weights_files), architecture)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "upload_refused" and words in error["message"]
    assert stored_uploads(service_stack) == before


def test_a_2_gb_upload_is_a_413_before_its_body_is_read(api, service_stack):
    before = stored_uploads(service_stack)
    address = urlsplit(api)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.putrequest("POST", "/v1/models")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(2 * 2**30))
    connection.endheaders()
    connection.send(b"--x\r\n")  # and no more: the answer must not wait for the rest
    answer = connection.getresponse()
    assert answer.status == 413 and "FILTERVIZ_MODEL_UPLOAD_MB" in answer.read().decode()
    assert stored_uploads(service_stack) == before


@pytest.mark.unit
def test_an_upload_is_its_owners_and_admins_and_anyones_where_it_has_no_owner():
    owned, unowned = {"owners": ["alice"]}, {"owners": []}
    assert may_use(owned, "alice", admin=False) and not may_use(owned, "bob", admin=False)
    assert may_use(owned, "root", admin=True) and may_use(unowned, "bob", admin=False)
    assert may_use(owned, None, admin=False)  # an API without tokens: every caller sees everything


def test_filterviz_upload_prints_the_id_and_submit_renders_with_it(api, weights_files, capsys, tmp_path):
    from cli.main import main

    assert main(["upload", str(weights_files["vgg16"]), "--architecture", "vgg16", "--api", api]) == 0
    upload_id = capsys.readouterr().out.strip()
    assert upload_id == f"upload:{hashlib.sha256(weights_files['vgg16'].read_bytes()).hexdigest()}"
    args = ["submit", "--api", api, "--layer", "block1_conv1", "--filters", "0-1", "--size", "32", "--steps", "2",
            "--grid", "1", "--weights", upload_id, "--wait", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["params"]["weights"] == upload_id
    # Refused: the ResNet50 file as VGG16's (exit 5, the reason on stderr).
    assert main(["upload", str(weights_files["resnet50"]), "--architecture", "vgg16", "--api", api]) == 5
    assert "vgg16 without its top holds 14,714,688" in capsys.readouterr().err


def test_a_whole_keras_model_renders_its_own_layers(api, service_stack, keras_model):
    data = keras_model.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    answer = upload(api, data, architecture="", preprocessing="none", name="flowers v2")
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert (record["kind"], record["id"], record["architecture"], record["input_side"]) == (
        "model",
        f"upload:{sha256}",
        None,
        32,
    )
    assert [(layer["name"], layer["filters"]) for layer in record["layers"]] == [
        ("edges", 8),
        ("parts", 16),
        ("mixed", 16),
    ]
    assert requests.get(f"{api}{answer.headers['Location']}", timeout=10).json() == record
    assert f"{UPLOAD_PREFIX}{sha256}.keras" in stored_uploads(service_stack)

    # Its layers are the job's to choose from, at any size its layer allows (not only the saved 32).
    spec = {"model": record["id"], "layer": "parts", "filters": [0, 5, 15], "image_size": 40, "steps": 3,
            "method": "fourier", "seed": 3, "grid": {"n": 2}}  # fmt: skip
    job = submit(api, spec)
    done = wait_for(api, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    manifest = requests.get(f"{api}/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
    assert (manifest["params"]["model"], manifest["weights"]) == (record["id"], f"file:{sha256}")
    assert [entry["index"] for entry in manifest["filters"]] == [0, 5, 15]
    grid = fetch_png(f"{api}/v1/jobs/{job['id']}/grid.png")
    assert grid.shape[:2] == (2 * 40 + 5, 2 * 40 + 5)
    # The same job again: served from the cache, keyed by the model's content.
    again = submit(api, {**spec, "filters": [0, 5]})
    again = wait_for(api, again["id"], {"succeeded", "failed"})
    assert again["status"] == "succeeded", again["error"]
    cached = requests.get(f"{api}/v1/jobs/{again['id']}/manifest.json", timeout=10).json()
    assert cached["cache"]["hits"] == 2 and cached["weights"] == f"file:{sha256}"


def test_jobs_naming_a_whole_model_wrongly_are_a_422_naming_the_field(api, keras_model, weights_files):
    model = upload(api, keras_model.read_bytes(), architecture="").json()["id"]
    for body, field, words in [
        ({**JOB, "model": "upload:" + "0" * 64}, "model", "no upload"),
        ({**JOB, "model": model, "layer": "block2_conv1"}, "layer", "unknown layer 'block2_conv1'"),
        ({**JOB, "model": model, "layer": "parts", "image_size": 16}, "image_size", "needs at least 32"),
        ({**JOB, "model": model, "layer": "parts", "weights": model}, "weights", "carries its own weights"),
        ({**JOB, "weights": model}, "weights", "is a whole model"),
        ({**JOB, "model": "vgg17"}, "model", "unknown model 'vgg17'"),
    ]:
        answer = requests.post(f"{api}/v1/jobs", json=body, timeout=10)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["problems"][0]["field"] == field and words in answer.text, answer.text
    # Units are rendered for anyone who asks: an upload's are its owners', through their jobs.
    unit = requests.get(f"{api}/v1/units/{model}/parts/0.png", timeout=10)
    assert unit.status_code == 404 and "no unit 0" in unit.text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda path: keras_files.with_lambda(path).read_bytes(), "Lambda layer"),
        (lambda path: keras_files.with_custom_layer(path).read_bytes(), "custom object"),
        (lambda path: keras_files.dense_only(path).read_bytes(), "no convolution layer"),
        (lambda path: keras_files.with_members(keras_files.small_cnn(path), {"../../x.py": b"1"}), "outside it"),
    ],
)
def test_hostile_whole_models_are_refused_naming_why_and_nothing_is_stored(api, service_stack, tmp_path, make, words):
    before = stored_uploads(service_stack)
    answer = upload(api, make(tmp_path / "model.keras"), architecture="")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "upload_refused" and words in answer.text
    assert stored_uploads(service_stack) == before


def test_filterviz_upload_takes_a_whole_model_and_submit_renders_it(api, keras_model, capsys, tmp_path):
    from cli.main import main

    assert upload(api, keras_model.read_bytes(), architecture="").json()["preprocessing"] == "none"
    # The same bytes are one model: uploaded again, with the preprocessing they were first uploaded with.
    assert main(["upload", str(keras_model), "--preprocessing", "tf", "--api", api]) == 5
    assert "uploaded with preprocessing none" in capsys.readouterr().err
    assert main(["upload", str(keras_model), "--api", api]) == 0
    model_id = capsys.readouterr().out.strip()
    assert model_id == f"upload:{hashlib.sha256(keras_model.read_bytes()).hexdigest()}"
    args = ["submit", "--api", api, "--model", model_id, "--layer", "edges", "--filters", "0-1", "--size", "32",
            "--steps", "2", "--grid", "1", "--wait", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["params"]["model"] == model_id
    # A typo'd model is named before anything is sent (argparse: exit 2).
    with pytest.raises(SystemExit) as exited:
        main(["submit", "--api", api, "--model", "upload:123"])
    assert exited.value.code == 2 and "uploaded model's id" in capsys.readouterr().err


def test_an_atlas_of_a_whole_model_covers_each_of_its_convolutions(api, keras_model):
    model = upload(api, keras_model.read_bytes(), architecture="").json()["id"]
    asked = {"model": model, "image_size": 32, "steps": 2, "filters_per_layer": 2, "seed": 11}
    started = requests.post(f"{api}/v1/atlas", json=asked, timeout=10)
    assert started.status_code == 202, started.text
    assert [layer["layer"] for layer in started.json()["layers"]] == ["edges", "parts", "mixed"]
    atlas_url = f"{api}{started.headers['Location']}"
    deadline = time.monotonic() + 120
    while (found := requests.get(atlas_url, timeout=10).json())["status"] not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline, found
        time.sleep(0.3)
    assert found["status"] == "succeeded" and found["progress"] == {"done": 6, "total": 6}
    assert found["weights"] == f"file:{upload_sha256(model)}"
    unknown = requests.post(f"{api}/v1/atlas", json={**asked, "model": "upload:" + "0" * 64}, timeout=10)
    assert unknown.status_code == 422 and "no upload" in unknown.text


def test_a_model_that_passes_the_api_but_not_keras_fails_its_job_and_the_worker_goes_on(api, keras_model, tmp_path):
    other = keras_files.grey(tmp_path / "grey.keras")  # its weights: a 3x3x1x4 kernel where 3x3x3x8 is wanted
    answer = upload(api, keras_files.with_weights_of(keras_model, other), architecture="")
    assert answer.status_code == 201, answer.text
    job = submit(api, {"model": answer.json()["id"], "layer": "edges", "filters": [0], "image_size": 32, "steps": 1})
    failed = wait_for(api, job["id"], {"succeeded", "failed"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "weights_unavailable", failed
    # The same workers render the next job.
    fine = wait_for(api, submit(api, {**JOB, "seed": 8})["id"], {"succeeded", "failed"})
    assert fine["status"] == "succeeded", fine["error"]
