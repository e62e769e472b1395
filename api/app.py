"""The Flask app factory."""

from flask import Flask

from api.errors import register_error_handlers
from api.jobs import jobs
from api.meta import meta
from api.services import Services
from api.web import web
from api.workers import workers
from shared.celery_app import create_celery
from shared.jobs import job_store
from shared.settings import Settings
from shared.storage import Storage


def create_app(settings: Settings | None = None) -> Flask:
    """An API app wired to the configured Redis, S3 and Celery broker (nothing is contacted here)."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["filterviz"] = Services(settings, job_store(settings), Storage(settings), create_celery(settings))
    app.register_blueprint(jobs)
    app.register_blueprint(meta)
    app.register_blueprint(web)
    app.register_blueprint(workers)
    register_error_handlers(app)
    return app
