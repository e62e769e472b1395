"""The Flask app factory."""

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api.access import require_tokens
from api.admission import Admission, init_rate_limit
from api.atlas import atlas
from api.errors import register_error_handlers
from api.headers import add_security_headers
from api.jobs import jobs
from api.meta import meta
from api.metrics import init_metrics
from api.readiness import WriteProbe
from api.services import Services
from api.web import web
from api.workers import workers
from shared.auth import Tokens
from shared.celery_app import create_celery
from shared.jobs import job_store, redis_client
from shared.settings import Settings
from shared.storage import Storage


def create_app(settings: Settings | None = None) -> Flask:
    """An API app wired to the configured Redis, S3 and Celery broker (nothing is contacted here).

    With FILTERVIZ_API_TOKENS_FILE set, the file is read now: a missing or malformed one stops the start.
    """
    settings = settings or Settings()
    tokens = Tokens.load(settings.api_tokens_file) if settings.api_tokens_file else None
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = DefaultJSONProvider(app)
    app.json.sort_keys = False  # keys in the order the code writes them
    # The API answers at once while Redis is down (503 with Retry-After) rather than holding a
    # request thread through retries: the client is the one to try again.
    store, storage = job_store(settings, retry_seconds=0), Storage(settings)
    app.extensions["filterviz"] = Services(
        settings,
        store,
        storage,
        create_celery(settings),
        Admission(redis_client(settings, retry_seconds=0), store.status, settings),
        WriteProbe(storage.probe_write),
        tokens,
    )
    # First, so that its clock starts before any other check can answer the request.
    init_metrics(app, store.redis)
    app.register_blueprint(jobs)
    app.register_blueprint(atlas)
    app.register_blueprint(meta)
    app.register_blueprint(web)
    app.register_blueprint(workers)
    register_error_handlers(app)
    require_tokens(app, tokens)
    init_rate_limit(app, settings, "jobs.submit_job")
    add_security_headers(app)
    return app
