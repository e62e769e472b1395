"""`python -m shared.init_bucket`: create the bucket, waiting for the S3 server to take it.

Compose runs this once before the API and workers start. It uses the app's own S3 client, so it
works with any S3-compatible server (no vendor tool such as MinIO's `mc` in the image).
"""

import logging
import sys
import time

from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("filterviz.init_bucket")

WAIT_SECONDS = 120.0
RETRY_SECONDS = 2.0


def init_bucket(settings: Settings, wait_seconds: float = WAIT_SECONDS) -> None:
    """Create the bucket if it is missing, retrying while the server starts; raise once past the wait."""
    storage = Storage(settings)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            storage.ensure_bucket()
            return
        except Exception as error:  # not up yet, or not ready for writes: both mean "try again"
            if time.monotonic() >= deadline:
                raise
            log.info("S3 at %s not ready (%s); retrying", settings.s3_endpoint_url, error)
            time.sleep(RETRY_SECONDS)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        init_bucket(settings)
    except Exception as error:
        log.error("bucket %s could not be created at %s: %s", settings.s3_bucket, settings.s3_endpoint_url, error)
        return 1
    log.info("bucket %s is ready at %s", settings.s3_bucket, settings.s3_endpoint_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
