"""GET /v1/workers: the live workers, from their heartbeats in Redis."""

from flask import Blueprint

from api.services import services
from shared.workers import live_workers

workers = Blueprint("workers", __name__, url_prefix="/v1")


@workers.get("/workers")
def list_workers():
    """Each live worker process: name, weights, device, pid, start time, last heartbeat, unit it runs."""
    found = live_workers(services().jobs.redis)
    return {"count": len(found), "workers": found}
