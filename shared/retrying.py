"""Riding out S3 and Redis outages: retries of transient errors, exponential backoff with jitter,
for a window of time rather than a count (an outage lasts seconds, not attempts).

Both use "equal jitter": each wait is between half and all of min(cap, base * 2**n), so retries
from many workers spread out, and the window is still reached in a bounded number of tries.
"""

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

BACKOFF_BASE, BACKOFF_CAP = 0.5, 5.0
# S3 answers that mean "try again later" (SeaweedFS says InternalError when it has no writable volume).
_TRANSIENT_S3_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeoutException"}

T = TypeVar("T")


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row (equal jitter)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**failures)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retries_for(window_seconds: float) -> int:
    """How many retries make sure at least `window_seconds` pass (counting each wait's lower half)."""
    retries, waited = 0, 0.0
    while waited < window_seconds:
        waited += min(BACKOFF_CAP, BACKOFF_BASE * 2**retries) / 2
        retries += 1
    return retries


def redis_retry(window_seconds: float) -> Retry:
    """redis-py's retry of connection errors and timeouts, spread over at least `window_seconds`."""
    return Retry(EqualJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), retries_for(window_seconds))


def transient_s3_error(error: Exception) -> bool:
    """True for errors that an S3 server coming back would cure: no connection, timeouts, 5xx."""
    if isinstance(error, ConnectionError | HTTPClientError):  # refused, reset, connect or read timeout
        return True
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in _TRANSIENT_S3_CODES or status >= 500
    return False


def call_with_retry(call: Callable[[], T], window_seconds: float, transient: Callable[[Exception], bool]) -> T:
    """call(), retried while it raises transient errors, until `window_seconds` have passed."""
    give_up = time.monotonic() + window_seconds
    failures = 0
    while True:
        try:
            return call()
        except Exception as error:
            wait = backoff(failures)
            if not transient(error) or time.monotonic() + wait > give_up:
                raise
            failures += 1
            time.sleep(wait)
