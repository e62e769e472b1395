"""What people upload (weights for an architecture: shared/uploads.py; whole Keras models:
shared/model_uploads.py), and the check a job naming an upload passes."""

from typing import Any, cast, get_args

from flask import Blueprint, request
from werkzeug.exceptions import RequestEntityTooLarge

from api.access import current_caller, is_admin
from api.contract import UNAVAILABLE, Reply, documented, error
from api.errors import ApiError
from api.schemas import Upload, UploadForm
from api.services import current_services
from shared import model_uploads, uploads
from shared.jobs import now
from shared.models import ARCHITECTURES, Preprocessing
from shared.spec import MAX_LAYER_FILTERS, JobSpec

upload = Blueprint("uploads", __name__)
NAME_LENGTH = 64


def _refused(field: str, reason: str, status: int = 422) -> ApiError:
    return ApiError(status, "upload_refused", f"{field}: {reason}", [{"field": field, "reason": reason}])


@upload.post("/v1/models")
@documented("uploadModel", "Upload weights for an architecture (a fine-tuned VGG16, say), or a whole Keras model",
            body=UploadForm,
            body_media="multipart/form-data", replies={
    201: Reply("Stored (or already there): name it as a job's `weights`, or a whole model as its `model`", Upload),
    413: error("Over FILTERVIZ_MODEL_UPLOAD_MB"),
    415: error("Not multipart/form-data"),
    422: error("Refused, saying why: not HDF5 weights or a .keras model, pickled or object data, weights that "
               "don't fit the architecture, a Lambda layer or custom object, a member outside the archive, no "
               "convolution (each field named)"),
    429: error("Too many uploads from this client (FILTERVIZ_UPLOAD_RATE_LIMIT)", retry=True),
    **UNAVAILABLE,
})  # fmt: skip
def upload_weights():
    """Check the file as data (never run), store it content-addressed, and record its uploader as an owner."""
    services = current_services()
    request.max_content_length = services.settings.model_upload_mb * 2**20
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "upload the file as multipart/form-data (field `file`)")
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        limit = f"larger than {services.settings.model_upload_mb} MB (FILTERVIZ_MODEL_UPLOAD_MB)"
        raise _refused("file", limit, 413) from None
    name = form.get("name") or None
    if name is not None and len(name) > NAME_LENGTH:
        raise _refused("name", f"at most {NAME_LENGTH} characters")
    if "file" not in files:
        raise _refused("file", "missing: send the weights file or the .keras model as the form's `file`")
    data = files["file"].read()
    caller = current_caller()
    owner = caller.name if caller else None
    try:
        if model_uploads.is_keras_archive(data):
            sha256, fresh, stored = _whole_model(data, form, name, owner, services.settings.model_upload_mb)
        else:
            sha256, fresh, stored = _weights(data, form, name, owner)
    except uploads.UploadRefused as refused:
        raise _refused("file", str(refused)) from None
    record = services.storage.get_json(uploads.record_key(sha256))
    if record is None:
        services.storage.put(*stored)
        record = fresh
    elif record.get("architecture") != fresh["architecture"]:
        raise _refused("architecture", f"these bytes were uploaded as {record['architecture'] or 'a whole model'}")
    elif _preprocessing(record) != _preprocessing(fresh):
        # Its pictures and cache entries are the first upload's: the same bytes are one model.
        raise _refused("preprocessing", f"these bytes were uploaded with preprocessing {_preprocessing(record)}")
    elif owner and owner not in record["owners"]:
        record["owners"].append(owner)
    services.storage.put_json(uploads.record_key(sha256), record)
    return _public(record), 201, {"Location": f"/v1/models/uploads/{record['id']}"}


def _weights(data: bytes, form: Any, name: str | None, owner: str | None) -> tuple[str, dict, tuple]:
    """Weights for an architecture: their address, record, and what to store."""
    architecture = form.get("architecture", "")
    if architecture not in ARCHITECTURES:
        raise _refused("architecture", f"one of {', '.join(ARCHITECTURES)} is needed (or upload a whole .keras model)")
    inspected = uploads.inspect(data, architecture)
    record = uploads.new_record(inspected, architecture, name, owner, now())
    return inspected.sha256, record, (uploads.weights_key(inspected.sha256), data, "application/x-hdf5")


def _whole_model(data: bytes, form: Any, name: str | None, owner: str | None, limit_mb: int) -> tuple[str, dict, tuple]:
    """A whole Keras model: its address, record, and what to store."""
    preprocessing = form.get("preprocessing") or "none"
    if preprocessing not in get_args(Preprocessing):
        raise _refused("preprocessing", f"one of {', '.join(get_args(Preprocessing))}")
    inspected = model_uploads.inspect_model(
        data, cast(Preprocessing, preprocessing), limit_mb * 2**20, MAX_LAYER_FILTERS
    )
    if form.get("architecture"):
        raise _refused("architecture", "a whole model is its own architecture: leave `architecture` out")
    record = model_uploads.new_model_record(data, inspected, name, owner, now())
    sha256 = uploads.upload_sha256(record["id"])
    return sha256, record, (model_uploads.model_key(sha256), data, "application/zip")


@upload.get("/v1/models/uploads/<upload_id>")
@documented("getUpload", "An upload's record", replies={
    200: Reply("The upload", Upload), 404: error("No such upload, or not the caller's"), **UNAVAILABLE,
})  # fmt: skip
def get_upload(upload_id: str):
    """The upload's architecture, name, size and id (its owner's, or an admin's, to see)."""
    record = _usable_record(upload_id)
    if record is None:
        raise ApiError(404, "upload_not_found", f"no upload {upload_id[:100]!r} of yours")
    return _public(record)


def _usable_record(upload_id: str) -> dict | None:
    """The upload's record where the caller may render with it."""
    if uploads.UPLOAD_ID.fullmatch(upload_id) is None:
        return None
    record = current_services().storage.get_json(uploads.record_key(uploads.upload_sha256(upload_id)))
    caller = current_caller()
    if record is None or not uploads.may_use(record, caller.name if caller else None, is_admin()):
        return None
    return record


def check_uploads(spec: JobSpec) -> None:
    """422 naming `model` or `weights` unless the job's uploads are the caller's, and of their kind: a whole
    model as its `model`, weights of the job's model as its `weights`."""
    if spec.model not in ARCHITECTURES:
        record = _usable_record(spec.model)
        if record is None or record.get("kind") != "model":
            raise _refused("model", f"no upload {spec.model} of yours: POST /v1/models uploads a model")
    if spec.weights is None:
        return
    record = _usable_record(spec.weights)
    if record is None:
        raise _refused("weights", f"no upload {spec.weights} of yours: POST /v1/models uploads weights")
    if record.get("kind") == "model":
        raise _refused("weights", f"{spec.weights} is a whole model: name it as the job's `model`")
    if record["architecture"] != spec.model:
        raise _refused("weights", f"{spec.weights} holds {record['architecture']} weights, not {spec.model}'s")


def _preprocessing(record: dict) -> str | None:
    return record["table"]["preprocessing"] if record.get("kind") == "model" else None


def _public(record: dict) -> dict:
    public = {key: record[key] for key in ("id", "architecture", "name", "bytes", "parameters", "created_at")}
    if record.get("kind") == "model":
        table = record["table"]
        layers = [{key: layer[key] for key in ("name", "filters", "min_image_size")} for layer in table["layers"]]
        public |= {"input_side": record["input_side"], "preprocessing": table["preprocessing"], "layers": layers}
    return {"kind": record.get("kind", "weights"), **public}
