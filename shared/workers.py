"""Worker heartbeats in Redis: each worker process says every few seconds that it is alive, with
which weights, on which device, and what it runs; the API lists the live ones."""

import json
import time
from typing import Any

import redis

from shared.keys import WORKER, WORKERS

# A worker is live while its last heartbeat is younger than this (it beats every PUBLISH_SECONDS).
PUBLISH_SECONDS = 5
LIVE_SECONDS = 15


def _key(name: str) -> str:
    return WORKER + name


def publish(db: redis.Redis, name: str, info: dict[str, Any]) -> None:
    """Record that worker `name` is alive now, with what it says about itself."""
    seen = time.time()
    with db.pipeline() as pipe:
        pipe.set(_key(name), json.dumps({"name": name, **info, "seen_at": round(seen, 3)}), ex=LIVE_SECONDS)
        pipe.zadd(WORKERS, {name: seen})
        pipe.execute()


def withdraw(db: redis.Redis, name: str) -> None:
    """Worker `name` stops: it is no longer counted."""
    with db.pipeline() as pipe:
        pipe.delete(_key(name))
        pipe.zrem(WORKERS, name)
        pipe.execute()


def live_workers(db: redis.Redis) -> list[dict[str, Any]]:
    """The workers whose heartbeat is recent, by name; forgets the others."""
    db.zremrangebyscore(WORKERS, "-inf", time.time() - LIVE_SECONDS)
    names = sorted(n.decode() for n in db.zrange(WORKERS, 0, -1))
    found = db.mget([_key(n) for n in names]) if names else []
    return [json.loads(value) for value in found if value is not None]


def count_live(db: redis.Redis) -> int:
    """How many workers sent a heartbeat recently (one Redis call, for readiness)."""
    return db.zcount(WORKERS, time.time() - LIVE_SECONDS, "+inf")
