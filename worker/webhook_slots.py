"""Deliveries under way per owner, across every webhook worker: one tenant's slow receivers hold at
most a few of the delivery threads, so another tenant's deliveries never queue behind them.

A slot is a Redis lock (redis-py's Lock) named by the owner and a number: taking one is trying each
of the owner's locks without waiting, and a lock whose holder died expires on its own.
"""

from contextlib import suppress

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from shared.keys import WEBHOOK_SLOTS


class OwnerSlots:
    """`per_owner` slots for each owner (None, tokens off, is one owner), each held `hold_seconds` at most."""

    def __init__(self, db: redis.Redis, per_owner: int, hold_seconds: float) -> None:
        self._redis = db
        self._per_owner = per_owner
        self._hold = hold_seconds

    def take(self, owner: str | None) -> Lock | None:
        """A free slot of the owner's, now held; None when all are taken."""
        for slot in range(self._per_owner):
            lock = self._redis.lock(f"{WEBHOOK_SLOTS}:{owner or ''}:{slot}", timeout=self._hold, blocking=False)
            if lock.acquire():
                return lock
        return None

    @staticmethod
    def give_back(lock: Lock) -> None:
        """Free the slot (one that expired meanwhile may be another delivery's now: left alone)."""
        with suppress(LockError):
            lock.release()
