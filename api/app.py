"""The Flask app factory."""

import os

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api.access import require_tokens
from api.admission import Admission, init_rate_limit
from api.atlas import atlas
from api.auth import load_tokens
from api.errors import register_error_handlers
from api.events import events, init_event_streams
from api.headers import add_security_headers
from api.jobs import jobs
from api.meta import meta
from api.metrics import init_metrics
from api.readiness import WriteProbe
from api.services import Services
from api.throttle import failed_logins
from api.units import units
from api.uploads import upload
from api.web import web
from api.webhooks import webhooks
from api.workers import workers
from shared.celery_app import CeleryDispatch, create_celery, send_webhook
from shared.jobs import job_store, redis_client
from shared.layers import use_uploaded_models
from shared.lifecycle import Lifecycle
from shared.model_uploads import UploadedTables
from shared.settings import Settings
from shared.storage import Storage
from shared.webhooks import JobEvents


def create_app(settings: Settings | None = None) -> Flask:
    """An API app wired to the configured Redis, S3 and Celery broker (nothing is contacted here).

    With FILTERVIZ_API_TOKENS_FILE set, the file is read now: a missing or malformed one stops the start,
    as does its absence in Kubernetes (api/auth.py).
    """
    settings = settings or Settings()
    tokens = load_tokens(settings.api_tokens_file, settings.allow_no_tokens, os.environ)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Werkzeug answers any other Host with a 400: a rebound DNS name can't aim a browser at this API.
    app.config["TRUSTED_HOSTS"] = settings.trusted_hosts
    app.json = DefaultJSONProvider(app)
    app.json.sort_keys = False  # keys in the order the code writes them
    # The API answers at once while Redis is down (503 with Retry-After) rather than holding a
    # request thread through retries: the client is the one to try again.
    store, storage, celery = job_store(settings, retry_seconds=0), Storage(settings), create_celery(settings)
    # Jobs naming an uploaded model are validated against its table, kept in the bucket.
    use_uploaded_models(UploadedTables(storage))
    app.extensions["filterviz"] = Services(
        settings,
        store,
        storage,
        celery,
        Lifecycle(
            store,
            storage,
            CeleryDispatch(celery),
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            events=JobEvents(store, send_webhook(celery)),
        ),
        Admission(redis_client(settings, retry_seconds=0), store.status, settings),
        WriteProbe(storage.probe_write),
        tokens,
    )
    # First, so that its clock starts before any other check can answer the request.
    init_metrics(app, store.redis, settings.metrics_cache_seconds)
    app.register_blueprint(jobs)
    app.register_blueprint(atlas)
    app.register_blueprint(meta)
    app.register_blueprint(web)
    app.register_blueprint(workers)
    app.register_blueprint(webhooks)
    app.register_blueprint(upload)
    app.register_blueprint(units)
    app.register_blueprint(events)
    init_event_streams(app, settings.event_stream_slots)
    register_error_handlers(app)
    require_tokens(app, tokens, failed_logins(settings.redis_url, settings.failed_auth_limit))
    limits = {"jobs.submit_job": settings.submit_rate_limit, "uploads.upload_weights": settings.upload_rate_limit,
              "units.unit_picture": settings.unit_rate_limit}  # fmt: skip
    init_rate_limit(app, settings, limits)
    add_security_headers(app)
    return app
