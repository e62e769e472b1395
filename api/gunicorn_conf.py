"""gunicorn settings for the API, the same for the local stack and the Docker image.

gunicorn -c python:api.gunicorn_conf api.wsgi:app

The process count is our own FILTERVIZ_API_WORKERS, not gunicorn's WEB_CONCURRENCY: gunicorn
parses WEB_CONCURRENCY with int() when it imports its config, before this file is read, so an
empty value (which compose renders for `${WEB_CONCURRENCY:-}`) crashes it on every start.
"""

import os
import sys
from functools import cache

from shared.environment import ConfigurationError
from shared.logs import gunicorn_json_config
from shared.setting_groups import ApiServerSettings

# Only gunicorn's own settings here: gunicorn reads this file before it forks (the whole Settings is
# read in on_starting). A refused value stops it with one line naming the variable, not a traceback.
try:
    _server = ApiServerSettings.from_environment()
except ConfigurationError as error:
    raise SystemExit(f"gunicorn: {error}") from None

bind = _server.api_bind
# One process per CPU this container may use (its quota, not the host's cores); threads cover
# slow clients and the waits on Redis and S3.
workers = _server.api_workers
worker_class = "gthread"
threads = _server.api_threads
# A listening socket per process, so the kernel spreads keep-alive connections evenly. With one
# shared socket, all 32 of bench/service.py's connections sometimes landed on one process, which
# then served them on one core (throughput halved, p99 up to 70 ms).
reuse_port = True
# Grids and manifests stream through the API: give slow links time, but not forever.
timeout = 60
# Shorter than compose's stop_grace_period for the api (25 s), so requests in flight finish.
graceful_timeout = 20
# gunicorn 27's control socket (for gunicornc) goes in ~/.gunicorn, which a read-only container
# can't write; nothing here uses it.
control_socket_disable = True
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
if _server.log_format == "json":
    logconfig_dict = gunicorn_json_config()


def on_starting(server) -> None:
    """Before any worker forks: refuse a documented default secret where this API would be exposed with
    it (gunicorn's bind is where it listens), and a missing or malformed tokens file, or none in
    Kubernetes (api/auth.py), with one line each rather than a boot loop of tracebacks; an empty
    folder for prometheus_client's multiprocess mode (api/metrics.py)."""
    from api.auth import TokenFileError, load_tokens
    from provision.default_secrets import DefaultSecretsError, refuse_default_secrets, settings_secrets
    from shared.metrics_dir import VARIABLE, fresh_multiprocess_dir
    from shared.settings import Settings

    settings = Settings()
    try:
        refuse_default_secrets(
            "the API", settings_secrets(settings), listening=server.cfg.bind, published=settings.bind_addr
        )
        load_tokens(settings.api_tokens_file, settings.allow_no_tokens, os.environ)
    except (DefaultSecretsError, TokenFileError) as error:
        server.log.error("%s", error)
        sys.exit(2)
    fresh_multiprocess_dir(os.environ.get(VARIABLE))


@cache
def _max_body_bytes(upload: bool) -> int:
    from shared.settings import Settings

    settings = Settings()
    return settings.model_upload_mb * 2**20 if upload else settings.max_body_bytes


def pre_request(worker, req) -> None:
    """A body the app will refuse unread (413 over FILTERVIZ_MAX_BODY_BYTES, or an upload's limit)
    leaves the connection unusable: its answer says `Connection: close` (gunicorn drops a Connection
    header the app sets)."""
    worker.log.debug("%s %s", req.method, req.path)
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), None)
    upload = req.method == "POST" and req.path == "/v1/models"
    if length is not None and length.isdigit() and int(length) > _max_body_bytes(upload):
        req.force_close()


def child_exit(server, worker) -> None:
    """A worker process exited: its metrics files no longer count as live."""
    from shared.metrics_dir import process_dead

    process_dead(worker.pid)
