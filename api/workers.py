"""GET /v1/workers: the live workers, from their heartbeats in Redis."""

from typing import Any

from flask import Blueprint

from api.access import listed_owner
from api.contract import UNAVAILABLE, Reply, documented
from api.schemas import Workers
from api.services import current_services
from shared.workers import live_workers

workers = Blueprint("workers", __name__, url_prefix="/v1")
# What any token sees of a worker: what it runs on, not who it is nor whose job it runs.
PUBLIC_FIELDS = ("weights", "device", "started_at", "seen_at")


def public_view(worker: dict[str, Any]) -> dict[str, Any]:
    """A worker as a user token sees it: weights, device, times, and whether it is busy; no host
    name, pid or job id (another owner's)."""
    return {**{name: worker.get(name) for name in PUBLIC_FIELDS}, "busy": worker.get("unit") is not None}


@workers.get("/workers")
@documented("listWorkers", "Live worker processes, from their heartbeats (host names, pids and units for admins)",
            replies={200: Reply("The workers", Workers), **UNAVAILABLE})  # fmt: skip
def list_workers():
    """Each live worker process: weights, device, start time, last heartbeat and whether it is busy; for
    admins (and with tokens off) also its name, pid and the unit it runs."""
    found = live_workers(current_services().jobs.redis)
    if listed_owner() is not None:  # a user token: its view of everyone's workers
        found = [public_view(worker) for worker in found]
    return {"count": len(found), "workers": found}
