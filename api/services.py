"""What the API talks to, made once per app and reachable from every request."""

from dataclasses import dataclass

from celery import Celery
from flask import current_app

from api.admission import Admission
from api.auth import Tokens
from api.readiness import WriteProbe
from shared.jobs import JobStore
from shared.lifecycle import Lifecycle
from shared.settings import Settings
from shared.storage import Storage


@dataclass(frozen=True)
class Services:
    """Settings, the job records (read here; every move goes through `lifecycle`), storage, the Celery
    app (used to send, never to run, tasks), admission bounds, the storage write probe, and the API
    tokens (None: the API is open)."""

    settings: Settings
    jobs: JobStore
    storage: Storage
    celery: Celery
    lifecycle: Lifecycle
    admission: Admission
    storage_probe: WriteProbe
    tokens: Tokens | None = None


def current_services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["filterviz"]
