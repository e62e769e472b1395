"""Fetching Keras' ImageNet no-top VGG16 file when it is missing: once, checked, renamed into place.

No TensorFlow here: `make up` (devstack) and `filterviz weights fetch` call this before any worker
or engine starts. The file is downloaded next to its destination under a temporary name, its hash
checked against the one Keras publishes, and only then renamed (atomic on one file system), so a
cut download or a wrong file never sits where the worker looks.
"""

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests

from shared.models import ARCHITECTURES, DEFAULT_MODEL

# Where keras.applications.VGG16(include_top=False) downloads it from, and the hash Keras checks
# (an md5: Keras' get_file tells md5 from sha256 by the length of the hex digest, and so do we).
# Offline, a connection attempt should fail in seconds, not hang; a slow transfer is still fine.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
BLOCK_BYTES = 1 << 20
TRIAL_HINT = "for a trial run without them, use seeded random weights: FILTERVIZ_WEIGHTS=random:1"


class WeightsFetchError(Exception):
    """The weights could not be fetched or did not match their hash; the message says what to do."""


def imagenet_weights_path(configured: str | None = None, model: str = DEFAULT_MODEL) -> Path:
    """Where a network's ImageNet no-top weights are expected: Keras' cache, or for VGG16 the
    configured path (FILTERVIZ_IMAGENET_WEIGHTS) where set."""
    if configured and model == DEFAULT_MODEL:
        return Path(configured)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / ARCHITECTURES[model].weights_file


def hasher_for(expected_hash: str) -> "hashlib._Hash":
    """md5 for a 32-digit hex hash, sha256 for a 64-digit one (as Keras' get_file decides)."""
    algorithms = {32: hashlib.md5, 64: hashlib.sha256}
    if len(expected_hash) not in algorithms or any(c not in "0123456789abcdef" for c in expected_hash.lower()):
        raise WeightsFetchError(f"bad weights hash {expected_hash!r}: expected 32 (md5) or 64 (sha256) hex digits")
    return algorithms[len(expected_hash)]()


def ensure_imagenet_weights(
    configured_path: str | None = None,
    url: str | None = None,
    expected_hash: str | None = None,
    model: str = DEFAULT_MODEL,
) -> tuple[Path, bool]:
    """A network's ImageNet weights file, downloaded first if it is missing (saying so on stderr, with
    a progress bar on a terminal); returns (path, downloaded). Unset arguments mean Keras' own; the
    path, URL and hash configured apply to VGG16 (FILTERVIZ_IMAGENET_WEIGHTS, _WEIGHTS_URL, _WEIGHTS_HASH)."""
    architecture = ARCHITECTURES[model]
    if model != DEFAULT_MODEL:
        url = expected_hash = None
    path = imagenet_weights_path(configured_path, model)
    if path.is_file():
        return path, False
    url = url or architecture.weights_url
    expected_hash = expected_hash or architecture.weights_hash
    print(f"ImageNet weights of {model} missing at {path}: downloading {url}", file=sys.stderr)
    if expected_hash is None:
        print("Keras publishes no hash of this file: it is not checked (its sha256 is its identity)", file=sys.stderr)
    update, close = terminal_progress()
    try:
        download(url, path, expected_hash, update)
    finally:
        close()
    return path, True


def download(
    url: str, destination: Path, expected_hash: str | None, progress: Callable[[int, int | None], None] | None = None
) -> None:
    """Stream `url` into `destination` if its hash is `expected_hash`; otherwise leave nothing behind.

    `progress(bytes_so_far, total_or_None)` is called after each block.
    """
    hasher = hasher_for(expected_hash) if expected_hash else hashlib.sha256()
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsFetchError(f"can't create {destination.parent} for the weights: {error}") from None
    descriptor, part = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with (
            os.fdopen(descriptor, "wb") as stream,
            requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)) as reply,
        ):
            reply.raise_for_status()
            total = int(reply.headers["Content-Length"]) if "Content-Length" in reply.headers else None
            for block in reply.iter_content(BLOCK_BYTES):
                stream.write(block)
                hasher.update(block)
                if progress is not None:
                    progress(stream.tell(), total)
            stream.flush()
            os.fsync(stream.fileno())
        if expected_hash and hasher.hexdigest() != expected_hash.lower():
            raise WeightsFetchError(
                f"the file downloaded from {url} has {hasher.name} {hasher.hexdigest()}, not {expected_hash}, "
                "so it was deleted: check FILTERVIZ_WEIGHTS_URL and FILTERVIZ_WEIGHTS_HASH (or a proxy that "
                "rewrites downloads) and try again"
            )
        os.replace(part, destination)
    except requests.RequestException as error:
        raise WeightsFetchError(
            f"could not download the ImageNet weights from {url} ({type(error).__name__}: {error}). "
            "On a machine with internet run `filterviz weights fetch`, or download that URL yourself and set "
            f"FILTERVIZ_IMAGENET_WEIGHTS to the file (expected at {destination}); {TRIAL_HINT}"
        ) from None
    finally:
        Path(part).unlink(missing_ok=True)  # already gone once renamed into place


def terminal_progress() -> tuple[Callable[[int, int | None], None], Callable[[], None]]:
    """A tqdm bar in bytes on a terminal, nothing otherwise; returns (update, close)."""
    if not sys.stderr.isatty():
        return lambda received, total: None, lambda: None
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, desc="ImageNet weights", dynamic_ncols=True)

    def update(received: int, total: int | None) -> None:
        bar.total = total
        bar.update(received - bar.n)

    return update, bar.close
