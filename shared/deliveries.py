"""Deliveries: which worker received which unit, so that a unit delivered to a worker that dies before
starting it is sent again as soon as that death is known, not after a timer.

With late acks, the broker keeps a delivered message in its unacked set until the visibility
timeout (hours) once the consumer that took it is gone, and so does a Redis restart for a consumer
whose connection it dropped. BullMQ and Sidekiq's reliable fetch close the same gap the same way:
the consumer records what it took. Here:
- the Celery parent of each worker records a *receipt* as a message arrives (`received`): the unit,
  the parent's name, the time;
- the parent publishes every few seconds the units it holds, reserved or running, under a key that
  lapses LIVE_SECONDS after its last beat (`publish_holdings`);
- a unit that begins drops its receipt (`forget`, in Lifecycle.begin): from then on its lease
  covers it;
- the recovery sweep asks for the receipts whose receiver is gone, or whose receiver's later beat
  no longer lists the unit (it lost the message when Redis restarted): `orphaned`. The lifecycle
  sends those again and drops the receipt.
"""

import json
import time
from dataclasses import dataclass

import redis

from shared.keys import HOLDINGS, RECEIVED
from shared.workers import LIVE_SECONDS

# A receipt this young is left alone, and a receiver's beat must be this much younger than a receipt
# before it counts as not holding the unit (a message is in its hands before it is in its reserved set).
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class Orphan:
    """A unit delivered to a receiver that no longer holds it, and never started."""

    job_id: str
    unit: str
    receiver: str
    why: str


def member(job_id: str, unit: str) -> str:
    return f"{job_id}:{unit}"


def received(db: redis.Redis, job_id: str, unit: str, receiver: str) -> None:
    """`receiver` took a message of this unit from the broker now."""
    db.hset(RECEIVED, member(job_id, unit), json.dumps({"receiver": receiver, "at": round(time.time(), 3)}))


def publish_holdings(db: redis.Redis, receiver: str, held: list[str]) -> None:
    """`receiver` is alive and holds these units (reserved or running)."""
    holdings = json.dumps({"held": held, "at": round(time.time(), 3)})
    db.set(HOLDINGS + receiver, holdings, ex=LIVE_SECONDS)


def orphaned(db: redis.Redis) -> list[Orphan]:
    """Receipts whose receiver is gone, or beat since without the unit."""
    receipts = {name.decode(): json.loads(value) for name, value in db.hgetall(RECEIVED).items()}
    receivers = sorted({receipt["receiver"] for receipt in receipts.values()})
    found = dict(zip(receivers, db.mget([HOLDINGS + name for name in receivers]), strict=True)) if receivers else {}
    holdings = {name: json.loads(value) for name, value in found.items() if value is not None}
    orphans = []
    settled = time.time() - SETTLE_SECONDS
    for name, receipt in receipts.items():
        job_id, _, unit = name.rpartition(":")
        beat = holdings.get(receipt["receiver"])
        if receipt["at"] > settled:
            continue
        if beat is None:
            orphans.append(Orphan(job_id, unit, receipt["receiver"], "is gone"))
        elif beat["at"] > receipt["at"] + SETTLE_SECONDS and name not in beat["held"]:
            orphans.append(Orphan(job_id, unit, receipt["receiver"], "no longer holds it"))
    return orphans


def forget(db: redis.Redis | redis.client.Pipeline, job_id: str, unit: str) -> None:
    """Drop the unit's receipt: it began (its lease covers it now), was sent again, or its job ended."""
    db.hdel(RECEIVED, member(job_id, unit))
