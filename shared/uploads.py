"""Weights a user uploads for one of the architectures (a fine-tuned VGG16, say): what is taken, what
is refused and why, and where they are kept.

An upload is read as data and never run: an HDF5 file (Keras' `.weights.h5`, or the legacy `.h5`)
whose datasets are all floating-point numbers, as many as the architecture without its top holds. A
worker then loads it into the architecture's own network with Keras' `load_weights`, which checks
every layer's shapes (a file that passes here and fails there fails its job with
`weights_unavailable`). Pickles and object arrays are refused before anything is stored; a zip is a
whole model (shared/model_uploads.py).

Stored content-addressed in the bucket: models/<sha256>.weights.h5 and a record models/<sha256>.json
({id, architecture, name, owners, bytes, parameters, created_at}); the same file uploaded twice is
kept once, and each uploader is among its owners. Its identity in manifests and cache keys is
`file:<sha256>`, as for a weights file a worker is configured with: the same bytes, the same pictures.
"""

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import h5py

from shared.layers import model_tables

UPLOAD_PREFIX = "models/"
UPLOAD_ID = re.compile(r"upload:([0-9a-f]{64})")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# A pickle's protocol 2+ header, and NumPy's own format (which may hold pickled objects).
PICKLE_SIGNATURE = b"\x80"
NUMPY_SIGNATURE = b"\x93NUMPY"


class UploadRefused(ValueError):
    """The upload is not taken; the message says why, in words its sender can act on."""


@dataclass(frozen=True)
class Inspected:
    """An upload found to be weights of the architecture: its content address and size."""

    sha256: str
    bytes: int
    parameters: int


def weights_key(sha256: str) -> str:
    """Where the uploaded file lives in the bucket."""
    return f"{UPLOAD_PREFIX}{sha256}.weights.h5"


def record_key(sha256: str) -> str:
    """Where its record lives in the bucket."""
    return f"{UPLOAD_PREFIX}{sha256}.json"


def upload_id(sha256: str) -> str:
    """How a job names the upload (its `weights`)."""
    return f"upload:{sha256}"


def upload_identity(weights: str) -> str:
    """The identity of an upload's weights (its own, or a whole model's): `file:<sha256>`, as for the same
    file on a worker's disk."""
    return f"file:{upload_sha256(weights)}"


def upload_of(model: str, weights: str | None) -> str | None:
    """The upload a job renders with: its uploaded weights, or its model where that is an upload; None
    for a built-in network with the deployment's weights."""
    return weights or (model if UPLOAD_ID.fullmatch(model) else None)


def upload_sha256(weights: str) -> str:
    """The content address an upload id names (a validated `upload:<sha256>`)."""
    found = UPLOAD_ID.fullmatch(weights)
    if found is None:
        raise ValueError(f"{weights!r} is not an upload id")
    return found.group(1)


def inspect(data: bytes, architecture: str) -> Inspected:
    """`data` as weights of `architecture`, or UploadRefused saying why not."""
    if data.startswith(ZIP_SIGNATURE):
        raise UploadRefused("a zip archive is not a weights file: upload a whole .keras model without `architecture`")
    if data.startswith((PICKLE_SIGNATURE, NUMPY_SIGNATURE)):
        raise UploadRefused("pickled or NumPy content is refused: it can run code when loaded")
    if not data.startswith(HDF5_SIGNATURE):
        raise UploadRefused("not a Keras weights file: expected HDF5 (.weights.h5 from model.save_weights, or .h5)")
    parameters = float_count(data)
    expected = model_tables()[architecture].parameters
    if parameters != expected:
        raise UploadRefused(
            f"the file holds {parameters:,} weights; {architecture} without its top holds {expected:,}: save the "
            f"weights of keras.applications' {architecture} built with include_top=False"
        )
    return Inspected(hashlib.sha256(data).hexdigest(), len(data), parameters)


def float_count(data: bytes) -> int:
    """How many numbers an HDF5 weights file holds; UploadRefused where any dataset holds something else."""
    found: list[Any] = []
    try:
        with h5py.File(io.BytesIO(data), "r") as weights:
            weights.visititems(lambda _, item: found.append(item) if isinstance(item, h5py.Dataset) else None)
            if not found:
                raise UploadRefused("the file holds no weights")
            for dataset in found:
                if dataset.dtype.kind != "f":
                    raise UploadRefused(
                        f"{dataset.name} holds {dataset.dtype} data: only floating-point weights are taken "
                        "(objects and strings could be pickles)"
                    )
            return sum(dataset.size for dataset in found)
    except OSError as error:
        raise UploadRefused(f"the HDF5 file can't be read: {error}") from None


def refuse_unsafe_member(name: str) -> None:
    """UploadRefused where an archive's member would be written outside it, or is pickled content."""
    if name.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", name):
        raise UploadRefused(f"the archive's member {name[:200]!r} would be written outside it")
    if name.endswith((".pkl", ".pickle", ".npy", ".npz")):
        raise UploadRefused(f"the archive's member {name[:200]!r} is pickled or NumPy content: it can run code")


def new_record(inspected: Inspected, architecture: str, name: str | None, owner: str | None, now: str) -> dict:
    """The record of a first upload of these bytes."""
    return {"id": upload_id(inspected.sha256), "architecture": architecture, "name": name,
            "owners": [owner] if owner else [], "bytes": inspected.bytes, "parameters": inspected.parameters,
            "created_at": now}  # fmt: skip


def may_use(record: dict, caller: str | None, admin: bool) -> bool:
    """Whether a caller may render with an upload: its owners, admins, and anyone where it has no owner
    (uploaded with tokens off) or the API has no tokens (`caller` None)."""
    return caller is None or admin or not record["owners"] or caller in record["owners"]
