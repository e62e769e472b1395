"""The OpenAPI document is generated from the routes' contracts (api/contract.py): no route can be
missing from it, and every schema in it is valid JSON Schema with every reference resolved."""

import json
import re

import jsonschema
import pytest

from api.app import create_app
from api.openapi import build_document, documented_rules
from shared.methods import METHODS
from shared.settings import Settings
from shared.spec import Limits

NOWHERE = "127.0.0.1:9"  # the discard port: the document needs no server


@pytest.fixture(scope="module")
def app():
    return create_app(Settings(redis_url=f"redis://{NOWHERE}/0", s3_endpoint_url=f"http://{NOWHERE}"))


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").get_json()


def test_every_route_but_the_deployments_own_has_a_contract(app):
    missing = [rule.rule for rule, contract in documented_rules(app) if contract is None]
    assert missing == []


def test_every_route_and_method_is_in_the_document_once(app, document):
    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    expected = sum(len(rule.methods - {"HEAD", "OPTIONS"}) for rule, _ in documented_rules(app))
    assert len(operations) == expected
    assert "/metrics" not in document["paths"] and "/static/{filename}" not in document["paths"]


def test_path_parameters_are_typed_by_their_rule_and_contract(document):
    filter_png = document["paths"]["/v1/jobs/{job_id}/filters/{index}.png"]["get"]
    parameters = {p["name"]: p for p in filter_png["parameters"]}
    assert parameters["job_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters["index"]["schema"] == {"type": "integer"}
    # An optional query parameter: absent rather than null, bounds from the query model.
    assert parameters["size"] == {"name": "size", "in": "query", "required": False,
                                  "schema": {"type": "integer", "minimum": 16, "maximum": 1024,
                                             "description": "fit in size x size"}}  # fmt: skip
    # The page takes any id: the page itself says whether the job exists.
    page = document["paths"]["/jobs/{job_id}"]["get"]
    assert page["parameters"][0]["schema"] == {"type": "string"}


def test_every_schema_is_valid_and_every_reference_resolves(document):
    schemas = document["components"]["schemas"]
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert referenced <= set(schemas), referenced - set(schemas)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_each_methods_parameters_are_in_the_document_with_their_bounds(document):
    schemas = document["components"]["schemas"]
    for body in ("JobSpec", "AtlasRequest"):
        choices = schemas[body]["properties"]["method_params"]["anyOf"]
        assert [schemas[choice["$ref"].rsplit("/", 1)[1]]["title"] for choice in choices] == list(METHODS)
    jitter = schemas["FourierParams"]["properties"]["jitter"]
    assert {key: jitter[key] for key in ("type", "minimum", "maximum", "default")} == {
        "type": "integer", "minimum": 0, "maximum": 64, "default": 6,
    }  # fmt: skip


def test_the_job_body_answered_validates_against_its_schema(app, document):
    """A job's answer, checked against the document's Job schema (with its refs to JobSpec)."""
    resolver_root = {"components": document["components"]}
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/Job", **resolver_root}, format_checker=jsonschema.FormatChecker()
    )
    job = {
        "id": "0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c",
        "status": "queued",
        "progress": {"done": 0, "total": 2},
        "params": {"layer": "block1_conv1", "filters": [0, 1]},
        "created_at": "2026-12-02T00:00:00Z",
        "queue": {"chunks_ahead": 0, "estimated_start_seconds": None},
        "links": {"self": "/v1/jobs/0b0e4f1e-62f8-4d8b-a3f6-6f3a3f6b8f7c"},
    }
    assert list(validator.iter_errors(job)) == []
    assert list(validator.iter_errors({**job, "status": "lost"}))


def test_tokens_put_every_v1_operation_behind_bearer(app):
    document = build_document(app, Limits(), tokens=True)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for operation in operations.values():
            guarded = path.startswith("/v1/")
            assert ("security" in operation) == guarded, path
            assert ("401" in operation["responses"]) == guarded, path
