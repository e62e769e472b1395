"""Fetching the ImageNet file: from a local HTTP server started here, checked by its hash, never left half-done."""

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import devstack.__main__ as devstack_main
from cli.main import main
from devstack.local import free_port
from worker.weights_fetch import WeightsFetchError, ensure_imagenet_weights

# Stands in for the 58 MB file: several blocks, so a download is streamed in pieces.
PAYLOAD = bytes(range(256)) * 12_000
GOOD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
GOOD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
BAD_SHA256 = hashlib.sha256(b"another file").hexdigest()


@pytest.fixture(scope="module")
def server() -> Iterator[dict]:
    """Serves PAYLOAD at /weights.h5 and counts the downloads."""
    served = {"downloads": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/weights.h5":
                self.send_error(404)
                return
            served["downloads"] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    served["url"] = f"http://127.0.0.1:{http.server_port}/weights.h5"
    yield served
    http.shutdown()
    http.server_close()


def test_a_good_hash_puts_the_file_in_place_once(server, tmp_path):
    destination = tmp_path / "models" / "vgg16.h5"
    before = server["downloads"]
    path, downloaded = ensure_imagenet_weights(str(destination), server["url"], GOOD_SHA256)
    assert (path, downloaded) == (destination, True)
    assert destination.read_bytes() == PAYLOAD
    assert ensure_imagenet_weights(str(destination), server["url"], GOOD_SHA256) == (destination, False)
    assert server["downloads"] == before + 1
    assert sorted(p.name for p in destination.parent.iterdir()) == ["vgg16.h5"]  # no temporary file left


def test_an_md5_is_checked_as_keras_does(server, tmp_path):
    destination = tmp_path / "vgg16.h5"
    ensure_imagenet_weights(str(destination), server["url"], GOOD_MD5)
    assert destination.read_bytes() == PAYLOAD


def test_a_bad_hash_fails_and_leaves_nothing_behind(server, tmp_path):
    destination = tmp_path / "vgg16.h5"
    with pytest.raises(WeightsFetchError, match=f"not {BAD_SHA256}"):
        ensure_imagenet_weights(str(destination), server["url"], BAD_SHA256)
    assert list(tmp_path.iterdir()) == []


def test_offline_fails_at_once_saying_what_to_do(tmp_path):
    destination = tmp_path / "vgg16.h5"
    with pytest.raises(WeightsFetchError) as raised:
        ensure_imagenet_weights(str(destination), f"http://127.0.0.1:{free_port()}/weights.h5", GOOD_SHA256)
    message = str(raised.value)
    assert "filterviz weights fetch" in message and "FILTERVIZ_WEIGHTS=random:1" in message
    assert "FILTERVIZ_IMAGENET_WEIGHTS" in message
    assert list(tmp_path.iterdir()) == []


def test_filterviz_weights_fetch_downloads_from_the_configured_url(server, tmp_path, monkeypatch, capsys):
    destination = tmp_path / "vgg16.h5"
    monkeypatch.setenv("FILTERVIZ_IMAGENET_WEIGHTS", str(destination))
    monkeypatch.setenv("FILTERVIZ_WEIGHTS_URL", server["url"])
    monkeypatch.setenv("FILTERVIZ_WEIGHTS_HASH", BAD_SHA256)
    assert main(["weights", "fetch"]) == 2
    assert "FILTERVIZ_WEIGHTS_HASH" in capsys.readouterr().err
    assert not destination.exists()
    monkeypatch.setenv("FILTERVIZ_WEIGHTS_HASH", GOOD_SHA256)
    assert main(["weights", "fetch"]) == 0
    assert destination.read_bytes() == PAYLOAD


def test_render_with_imagenet_fetches_first_and_never_falls_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FILTERVIZ_IMAGENET_WEIGHTS", str(tmp_path / "vgg16.h5"))
    monkeypatch.setenv("FILTERVIZ_WEIGHTS_URL", f"http://127.0.0.1:{free_port()}/weights.h5")
    argv = ["render", "--weights", "imagenet", "--layer", "block1_conv1", "--filters", "0-1", "--size", "32"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "FILTERVIZ_WEIGHTS=random:1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_make_up_stops_before_starting_anything_when_the_weights_cannot_be_fetched(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FILTERVIZ_WEIGHTS", raising=False)  # imagenet, the default
    monkeypatch.setenv("FILTERVIZ_IMAGENET_WEIGHTS", str(tmp_path / "vgg16.h5"))
    monkeypatch.setenv("FILTERVIZ_WEIGHTS_URL", f"http://127.0.0.1:{free_port()}/weights.h5")
    assert devstack_main.up(devstack_main.LocalStackSettings(local_dir=tmp_path / "state")) == 1
    assert "FILTERVIZ_WEIGHTS=random:1" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
