"""Admission: who a client is, how much unfinished work it and everyone may have, how fast it may submit.

Unfinished jobs are counted in Redis sorted sets of job ids, one for the whole service and one per
client. A job joins them when admitted; finished (or forgotten) jobs are dropped from a set
whenever it looks full, by asking the job records for their status, so the sets never hold more
than their bound and need no help from the workers.
"""

import math
import time
from collections.abc import Callable, Mapping
from typing import cast

import redis
from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded

from api.access import current_caller
from api.errors import ApiError
from shared.jobs import FINISHED
from shared.keys import ACTIVE_JOBS, RATE_LIMITS
from shared.settings import Settings

# A client has no way to know when a slot frees up; about the time a small job takes.
FULL_RETRY_SECONDS = 30
# Longer than any submission takes between admission and writing the job's record.
IN_FLIGHT_SECONDS = 60


def client_identity() -> str:
    """Who is asking: the token's name when tokens are on, else the address."""
    caller = current_caller()
    return f"token:{caller.name}" if caller else request.remote_addr or "unknown"


class Admission:
    """Bounds on unfinished jobs, in all and per client; past them, a 429 with Retry-After."""

    def __init__(self, db: redis.Redis, status: Callable[[str], str | None], settings: Settings) -> None:
        self._redis = db
        self._status = status
        self._max_active = settings.max_active_jobs
        self._max_per_client = settings.max_active_jobs_per_client
        self._forget_after = settings.job_record_days * 86400

    def admit(self, job_id: str, client: str) -> None:
        """Count job_id as unfinished work of client, or raise 429 when either bound is reached.

        Added first and counted after, so two submissions at once can't both slip under a bound.
        """
        bounds = [
            (f"{ACTIVE_JOBS}:{client}", self._max_per_client, f"{client} has"),
            (ACTIVE_JOBS, self._max_active, "the service has"),
        ]
        joined: list[str] = []
        for key, bound, who in bounds:
            with self._redis.pipeline() as pipe:
                pipe.zadd(key, {job_id: time.time()})
                pipe.expire(key, self._forget_after)
                pipe.execute()
            joined.append(key)
            if self._count(key, bound) > bound:
                for added in joined:
                    self._redis.zrem(added, job_id)
                raise ApiError(
                    429,
                    "too_many_jobs",
                    f"{who} {bound} unfinished jobs, the most allowed; wait for one to finish or cancel one",
                    retry_after=FULL_RETRY_SECONDS,
                )

    def _count(self, key: str, bound: int) -> int:
        """Unfinished jobs in the set; finished ones are dropped only when it looks full (cheap otherwise)."""
        count = self._redis.zcard(key)
        if count <= bound:
            return count
        # A job is admitted before its record is written: one without a record is gone only
        # once it is older than any submission takes.
        recent = time.time() - IN_FLIGHT_SECONDS
        done = [
            job_id
            for job_id, admitted in self._redis.zrange(key, 0, -1, withscores=True)
            if self._finished(job_id.decode(), admitted > recent)
        ]
        if done:
            self._redis.zrem(key, *done)
        return count - len(done)

    def _finished(self, job_id: str, in_flight: bool) -> bool:
        status = self._status(job_id)
        return status in FINISHED or (status is None and not in_flight)


def init_rate_limit(app: Flask, settings: Settings, limits: Mapping[str, str]) -> None:
    """Rate-limit the views of some endpoints per client with flask-limiter, counted in Redis: `limits`
    maps an endpoint to its limit ("off" or empty: none)."""
    limits = {endpoint: limit for endpoint, limit in limits.items() if limit.strip().lower() not in {"", "off"}}
    if not limits:
        return
    limiter = Limiter(
        client_identity,
        app=app,
        storage_uri=settings.redis_url,
        storage_options={"socket_timeout": 5, "socket_connect_timeout": 3},
        key_prefix=RATE_LIMITS,
        strategy="fixed-window",
    )
    # The limit wraps this app's view: each app (and test) has its own limiter and storage.
    # The view is sync: the limiter's wrapper keeps its type, which Flask's sync-or-async RouteCallable blurs.
    for endpoint, limit in limits.items():
        view = cast(Callable[..., ResponseReturnValue], app.view_functions[endpoint])
        app.view_functions[endpoint] = limiter.limit(limit)(view)

    @app.errorhandler(RateLimitExceeded)
    def _too_fast(error: RateLimitExceeded):
        current = limiter.current_limit
        wait = current.reset_at - time.time() if current else error.limit.limit.get_expiry()
        retry_after = max(1, math.ceil(wait))
        message = (
            f"too many {request.method} {request.path} from {client_identity()} (at most {error.description}); "
            f"try again in {retry_after} s"
        )
        return ApiError(429, "too_many_requests", message, retry_after=retry_after).response()
