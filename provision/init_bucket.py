"""`python -m provision.init_bucket`: the bucket, its expiry rule and the app's S3 user, before anything starts.

Compose runs this once before the API and workers start (they wait for it to exit 0):
1. refuse the documented default secrets where the stack is exposed (provision/default_secrets.py);
2. with the storage root's credentials (S3_ROOT_ACCESS_KEY_ID / S3_ROOT_SECRET_ACCESS_KEY, given to
   this service only), create the bucket, waiting for the S3 server to take it;
3. set the bucket's lifecycle rule: results expire FILTERVIZ_JOB_RECORD_DAYS after they are written,
   as the job records in Redis do after their last change;
4. create the app's user with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY and a policy limited to the
   bucket (shared/s3_users.py), where the server has an IAM API (SeaweedFS); elsewhere the user must
   exist already (docker-compose.minio.yml makes it with MinIO's own client);
5. check that the app's credentials can write to the bucket.
Without root credentials (the local stack, an S3 you manage) steps 2-3 use the app's and 4 is skipped.
It uses the app's own S3 client, so it works with any S3-compatible server.
"""

import logging
import sys
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from provision.default_secrets import DefaultSecretsError, refuse_default_secrets, settings_secrets
from provision.s3_users import ensure_app_user, iam_client
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("filterviz.init_bucket")

WAIT_SECONDS = 120.0
RETRY_SECONDS = 2.0
# SeaweedFS applies IAM changes to its S3 gateway a moment after answering.
KEY_WAIT_SECONDS = 30.0
APP_USER = "filterviz-app"


def root_settings(settings: Settings) -> Settings | None:
    """The settings with the root's credentials in place of the app's, or None when none are given."""
    key_id, secret = settings.s3_root_access_key_id, settings.s3_root_secret_access_key
    if not key_id or not secret:
        return None
    return settings.model_copy(update={"s3_access_key_id": key_id, "s3_secret_access_key": secret})


def _retry(call: Callable[[], object], what: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            call()
            return
        except Exception as error:  # not up yet, or not ready for writes: both mean "try again"
            if time.monotonic() >= deadline:
                raise
            log.info("%s not yet (%s); retrying", what, error)
            time.sleep(RETRY_SECONDS)


def _key_works(app: Storage) -> Callable[[], bool]:
    def works() -> bool:
        try:
            app.probe_write()
        except (BotoCoreError, ClientError):
            return False
        return True

    return works


def init_bucket(settings: Settings, wait_seconds: float = WAIT_SECONDS) -> None:
    """Create the bucket, its expiry rule and the app's user; raise once past the wait, or when the
    app's credentials can't write to the bucket at the end."""
    root = root_settings(settings)
    admin = Storage(root or settings)
    _retry(admin.ensure_bucket, f"bucket {settings.s3_bucket} at {settings.s3_endpoint_url}", wait_seconds)
    if admin.expire_after(settings.job_record_days):
        log.info("results in %s expire after %d days", settings.s3_bucket, settings.job_record_days)
    else:
        log.warning("this S3 server has no lifecycle rules: results in %s never expire", settings.s3_bucket)
    app = Storage(settings)
    if root is not None:
        iam = iam_client(settings, root.s3_access_key_id, root.s3_secret_access_key)
        try:
            ensure_app_user(iam, settings, APP_USER, _key_works(app))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "").startswith("InvalidInput"):
                raise  # e.g. a key id that isn't 4-128 letters and digits: say so
            # No IAM API (MinIO has its own admin API): the user must have been made some other way.
            log.warning("no IAM API at %s (%s); checking that the app's key exists", settings.s3_endpoint_url, error)
    _retry(app.probe_write, f"writes with the app's key {settings.s3_access_key_id}", KEY_WAIT_SECONDS)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        refuse_default_secrets("s3-init", settings_secrets(settings), published=settings.bind_addr)
    except DefaultSecretsError as error:
        log.error("%s", error)
        return 2
    try:
        init_bucket(settings)
    except Exception as error:
        log.error("bucket %s could not be set up at %s: %s", settings.s3_bucket, settings.s3_endpoint_url, error)
        return 1
    log.info("bucket %s is ready at %s", settings.s3_bucket, settings.s3_endpoint_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
