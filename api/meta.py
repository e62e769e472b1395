"""Endpoints about the service itself: models, health, readiness, the OpenAPI document and docs page."""

from html import escape

from flask import Blueprint, Response, current_app

from api.contract import Reply, documented, html
from api.errors import UNAVAILABLE_RETRY_SECONDS
from api.openapi import openapi_document
from api.schemas import AnyObject, Health, Models, Readiness
from api.services import current_services
from shared.layers import default_layer, model_tables
from shared.methods import describe_methods
from shared.models import ARCHITECTURES
from shared.objectives import describe_objectives
from shared.version import package_version
from shared.workers import count_live

meta = Blueprint("meta", __name__)


@meta.get("/v1/models")
@documented("listModels", "Models and their layers with filter counts", replies={200: Reply("The models", Models)})
def list_models():
    """Each model with its conv layers and their filter counts, the methods with their parameters and
    defaults, and the kinds of objective terms with theirs (from static tables, no TensorFlow)."""
    methods = describe_methods()
    tables = model_tables()
    return {
        "models": [
            {
                "name": name,
                "description": architecture.description,
                "preprocessing": architecture.preprocessing,
                "min_image_size": architecture.min_input,
                "parameters": tables[name].parameters,
                "default_layer": default_layer(name),
                "methods": [method["name"] for method in methods],
                "layers": [
                    {"name": layer.name, "filters": layer.filters, "min_image_size": layer.min_image_size}
                    for layer in tables[name].layers
                ],
            }
            for name, architecture in ARCHITECTURES.items()
        ],
        "methods": methods,
        "objectives": describe_objectives(),
    }


@meta.get("/healthz")
@documented("healthz", "Alive", replies={200: Reply("Alive, with the package version", Health)})
def healthz():
    """The process is alive, and which filterviz it is."""
    return {"status": "ok", "version": package_version()}


@meta.get("/readyz")
@documented("readyz", "Redis answers and S3 takes writes", replies={
    200: Reply("Ready", Readiness),
    503: Reply("Not ready: each check says why", Readiness, headers=("Retry-After",)),
})  # fmt: skip
def readyz():
    """Ready when Redis answers and S3 takes writes; 503 naming what doesn't, and why."""
    services = current_services()
    checks: dict[str, str] = {}
    try:
        services.jobs.ping()
        checks["redis"] = "ok"
    except Exception as error:  # any failure to reach a dependency means "not ready"
        checks["redis"] = f"unavailable: {type(error).__name__}"
    checks["s3"] = services.storage_probe.problem() or "ok"
    ready = all(value == "ok" for value in checks.values())
    headers = {} if ready else {"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)}
    # Live workers (from their heartbeats) are reported, not required: the API takes jobs without them.
    workers = count_live(services.jobs.redis) if checks["redis"] == "ok" else None
    body = {"status": "ready" if ready else "not ready", "checks": checks, "workers": workers}
    return body, 200 if ready else 503, headers


@meta.get("/openapi.json")
@documented("openapi", "This document", replies={200: Reply("OpenAPI", AnyObject)})
def openapi():
    """The OpenAPI 3.1 document of this API, with this deployment's limits."""
    return _document()


def _document() -> dict:
    services = current_services()
    return openapi_document(current_app, services.settings.limits, services.tokens is not None)


@meta.get("/docs")
@documented("docs", "A page listing the endpoints", replies={200: html("HTML")})
def docs():
    """A plain page listing every endpoint (no external scripts: many deployments have no internet)."""
    document = _document()
    rows = "".join(
        f"<tr><td><code>{method.upper()}</code></td><td><code>{escape(path)}</code></td>"
        f"<td>{escape(operation['summary'])}</td></tr>"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    )
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>filterviz API</title>"
        '<link rel="stylesheet" href="/static/docs.css">'
        f"<h1>filterviz API {escape(document['info']['version'])}</h1>"
        "<p>The machine-readable document is at <a href=/openapi.json>/openapi.json</a>.</p>"
        f"<table><thead><tr><th>method<th>path<th>what it does</thead><tbody>{rows}</tbody></table></html>"
    )
    return Response(page, content_type="text/html; charset=utf-8")
