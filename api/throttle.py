"""Failed logins: wrong tokens counted per address in Redis, with `limits` (the library under
flask-limiter), so a guesser gets a 429 after a few tries rather than an answer per guess.

While Redis is down nothing is counted and nobody is throttled: a token guessed in that window is
still one of 2^256, and the API's answers that need no Redis (`/v1/models`, the metrics saying
Redis is down) go on."""

import logging
import math
import time

import redis
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from api.errors import ApiError
from shared.keys import FAILED_AUTH

log = logging.getLogger(__name__)


class FailedLogins:
    """At most `limit` wrong tokens per address a window (flask-limiter's notation, e.g. "20 per minute")."""

    def __init__(self, redis_url: str, limit: str) -> None:
        self._item: RateLimitItem = parse(limit)
        storage = storage_from_string(redis_url, socket_timeout=5, socket_connect_timeout=3)
        self._limiter = FixedWindowRateLimiter(storage)

    def check(self, address: str) -> None:
        """429 with Retry-After while the address is over the limit."""
        try:
            if self._limiter.test(self._item, FAILED_AUTH, address):
                return
            reset = self._limiter.get_window_stats(self._item, FAILED_AUTH, address).reset_time
        except redis.RedisError as error:
            log.warning("wrong tokens are not throttled while Redis is unavailable: %s", error)
            return
        retry_after = max(1, math.ceil(reset - time.time()))
        message = f"too many wrong tokens from {address}; try again in {retry_after} s"
        raise ApiError(429, "too_many_failed_logins", message, retry_after=retry_after)

    def count(self, address: str) -> None:
        """One more wrong token from the address."""
        try:
            self._limiter.hit(self._item, FAILED_AUTH, address)
        except redis.RedisError as error:
            log.warning("a wrong token from %s was not counted: Redis is unavailable: %s", address, error)


def failed_logins(redis_url: str, limit: str) -> FailedLogins | None:
    """The throttle, or None when the limit is "off" (or empty)."""
    return None if limit.strip().lower() in {"", "off"} else FailedLogins(redis_url, limit)
