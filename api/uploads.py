"""Weights people upload for an architecture (shared/uploads.py), and the check a job naming them passes."""

from flask import Blueprint, request
from werkzeug.exceptions import RequestEntityTooLarge

from api.access import current_caller, is_admin
from api.contract import UNAVAILABLE, Reply, documented, error
from api.errors import ApiError
from api.schemas import Upload, UploadForm
from api.services import current_services
from shared import uploads
from shared.jobs import now
from shared.models import ARCHITECTURES
from shared.spec import JobSpec

upload = Blueprint("uploads", __name__)
NAME_LENGTH = 64


def _refused(field: str, reason: str, status: int = 422) -> ApiError:
    return ApiError(status, "upload_refused", f"{field}: {reason}", [{"field": field, "reason": reason}])


@upload.post("/v1/models")
@documented("uploadWeights", "Upload weights for an architecture (a fine-tuned VGG16, say)", body=UploadForm,
            body_media="multipart/form-data", replies={
    201: Reply("Stored (or already there): name it as a job's `weights`", Upload),
    413: error("Over FILTERVIZ_MODEL_UPLOAD_MB"),
    415: error("Not multipart/form-data"),
    422: error("Refused, saying why: not HDF5 weights, pickled or object data, an archive, or weights that don't "
               "fit the architecture (each field named)"),
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
    architecture, name = form.get("architecture", ""), form.get("name") or None
    if architecture not in ARCHITECTURES:
        raise _refused("architecture", f"one of {', '.join(ARCHITECTURES)} is needed")
    if name is not None and len(name) > NAME_LENGTH:
        raise _refused("name", f"at most {NAME_LENGTH} characters")
    if "file" not in files:
        raise _refused("file", "missing: send the weights file as the form's `file`")
    data = files["file"].read()
    try:
        inspected = uploads.inspect(data, architecture)
    except uploads.UploadRefused as refused:
        raise _refused("file", str(refused)) from None
    caller = current_caller()
    owner = caller.name if caller else None
    record = services.storage.get_json(uploads.record_key(inspected.sha256))
    if record is None:
        services.storage.put(uploads.weights_key(inspected.sha256), data, "application/x-hdf5")
        record = uploads.new_record(inspected, architecture, name, owner, now())
    elif record["architecture"] != architecture:
        raise _refused("architecture", f"these bytes were uploaded as {record['architecture']} weights")
    elif owner and owner not in record["owners"]:
        record["owners"].append(owner)
    services.storage.put_json(uploads.record_key(inspected.sha256), record)
    return _public(record), 201, {"Location": f"/v1/models/uploads/{record['id']}"}


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


def check_weights(spec: JobSpec) -> None:
    """422 naming `weights` unless the job's uploaded weights are the caller's and of the job's model."""
    if spec.weights is None:
        return
    record = _usable_record(spec.weights)
    if record is None:
        raise _refused("weights", f"no upload {spec.weights} of yours: POST /v1/models uploads weights")
    if record["architecture"] != spec.model:
        raise _refused("weights", f"{spec.weights} holds {record['architecture']} weights, not {spec.model}'s")


def _public(record: dict) -> dict:
    return {key: record[key] for key in ("id", "architecture", "name", "bytes", "parameters", "created_at")}
