"""The app's own S3 user, limited to its bucket, made with the storage root's credentials.

SeaweedFS (4.47, `-s3.iam.readOnly=false`) serves AWS' IAM API on its S3 port: the bucket init
creates the user, gives it the access key and secret the app is configured with (SeaweedFS takes
caller-supplied keys, AWS does not), and puts an inline policy allowing only the object and listing
actions the app uses, on its bucket only. The app's containers get these credentials, never the
root's. Every step can run again.
"""

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.settings import Settings

if TYPE_CHECKING:  # the boto3-stubs types (a dev dependency)
    from mypy_boto3_iam import IAMClient

log = logging.getLogger("filterviz.s3_users")
POLICY_NAME = "filterviz-bucket"


# What shared/storage.py does with the app's key, and nothing more: list the bucket (head_bucket,
# list_objects_v2), read, write and delete its objects (get_object and presigned GETs, put_object,
# copy_object, delete_object, delete_objects). Not the bucket itself (create, delete, its policy or
# lifecycle rule: the bucket init does those with the root's key), not ACLs, not other buckets.
BUCKET_ACTIONS = ["s3:ListBucket"]
OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]


def bucket_policy(bucket: str) -> dict[str, Any]:
    """The actions the app uses on its bucket and its objects, nothing else (no other bucket, no IAM)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": BUCKET_ACTIONS, "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def iam_client(settings: Settings, access_key: str, secret_key: str) -> "IAMClient":
    """An IAM client of the S3 endpoint (SeaweedFS' embedded IAM API) with the root's credentials."""
    return boto3.client(
        "iam",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=settings.s3_region,
        config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}),
    )


def _with_chosen_key(client: "IAMClient", key_id: str, secret: str) -> None:
    """Make CreateAccessKey send AccessKeyId and SecretAccessKey (SeaweedFS' extension; not in boto's model)."""

    def add(params: dict[str, Any], **_: Any) -> None:
        params["body"].update({"AccessKeyId": key_id, "SecretAccessKey": secret})

    client.meta.events.register("before-call.iam.CreateAccessKey", add)


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def ensure_app_user(iam: "IAMClient", settings: Settings, user: str, key_works: Callable[[], bool]) -> None:
    """Create `user` with the app's key and the bucket-only policy. Other keys of the user are removed,
    and the app's key is made again when `key_works()` says its secret changed (it can't be read back)."""
    try:
        iam.create_user(UserName=user)
        log.info("created S3 user %s", user)
    except ClientError as error:
        if _error_code(error) != "EntityAlreadyExists":
            raise
    wanted = settings.s3_access_key_id
    keys = {key["AccessKeyId"] for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    stale = keys - {wanted} if wanted in keys and key_works() else keys
    for key_id in stale:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    if wanted in stale or wanted not in keys:
        _with_chosen_key(iam, wanted, settings.s3_secret_access_key)
        iam.create_access_key(UserName=user)
    iam.put_user_policy(
        UserName=user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(bucket_policy(settings.s3_bucket))
    )
    log.info("S3 user %s: key %s, allowed bucket %s only", user, settings.s3_access_key_id, settings.s3_bucket)
