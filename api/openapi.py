"""The OpenAPI document, generated from the app's URL rules and the contracts on their views (api/contract.py).

Paths and their parameters come from the rules; what each operation takes and answers from its
contract; the bodies' schemas from pydantic models. The job schema is the same model, with the
deployment's limits, that validates requests (shared/spec.py's limited_spec_model), so the document
states every bound as enforced.
"""

import re
from collections import Counter
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from api.contract import HEADERS, Contract, Reply, contract_of
from api.schemas import Error
from api.webhooks import request_schema
from shared.spec import Limits, limited_spec_model

REF = "#/components/schemas/{model}"
# Endpoints outside the API's document: the page's files, and Prometheus' scrape and the autoscaler's
# backlog (api/metrics.py), which are for the deployment, not for clients.
UNDOCUMENTED = frozenset({"static", "metrics", "backlog"})
# `<converter(args):name>` in a Werkzeug rule.
_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_TYPES = {"int": "integer", "float": "number"}


def openapi_document(app: Flask, limits: Limits, tokens: bool) -> dict[str, Any]:
    """OpenAPI 3.1 for every documented route of `app`, with `limits` stated in the job schema, and
    bearer tokens on every /v1 operation where `tokens` are configured. Built once per app."""
    built = app.extensions.setdefault("openapi", {})
    if (limits, tokens) not in built:
        built[limits, tokens] = build_document(app, limits, tokens)
    return built[limits, tokens]


def documented_rules(app: Flask) -> list[tuple[Rule, Contract | None]]:
    """Every rule of the app but the undocumented ones, with its view's contract (None: it has none)."""
    return [
        (rule, contract_of(app.view_functions[rule.endpoint]))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.rpartition(".")[2] not in UNDOCUMENTED
    ]


def build_document(app: Flask, limits: Limits, tokens: bool) -> dict[str, Any]:
    rules = [(rule, contract) for rule, contract in documented_rules(app) if contract is not None]
    # A view serving several paths (the page) gets an operation id per path.
    shared = Counter(rule.endpoint for rule, _ in rules)
    paths: dict[str, dict[str, Any]] = {}
    for rule, contract in rules:
        path = _ARGUMENT.sub(r"{\g<name>}", rule.rule)
        operation_id = contract.operation_id + (_camel(path) if shared[rule.endpoint] > 1 else "")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(contract, operation_id, rule)
            paths.setdefault(path, {})[method.lower()] = (
                _with_token(operation) if tokens and path.startswith("/v1/") else operation
            )
    components: dict[str, Any] = {"schemas": _schemas([contract for _, contract in rules], limits)}
    if tokens:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "filterviz", "version": "1"},
        "paths": paths,
        "components": components,
    }


def _camel(path: str) -> str:
    return "".join(word.capitalize() for word in re.findall(r"[a-z]+", path))


def _operation(contract: Contract, operation_id: str, rule: Rule) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": contract.summary}
    parameters = _path_parameters(rule, contract.path) + _parameters(contract.query, "query")
    if parameters:
        operation["parameters"] = parameters
    if contract.body is not None:
        operation["requestBody"] = {"required": True, "content": {contract.body_media: {"schema": _ref(contract.body)}}}
    operation["responses"] = {str(status): _response(reply) for status, reply in sorted(contract.replies.items())}
    return operation


def _path_parameters(rule: Rule, model: type[BaseModel] | None) -> list[dict[str, Any]]:
    """The rule's arguments, typed by their converters; a contract's path model types them more closely."""
    typed = {parameter["name"]: parameter for parameter in _parameters(model, "path")}
    return [
        typed.get(match["name"])
        or {"name": match["name"], "in": "path", "required": True,
            "schema": {"type": _CONVERTER_TYPES.get(match["converter"] or "", "string")}}
        for match in _ARGUMENT.finditer(rule.rule)
    ]  # fmt: skip


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    """A model's fields as parameters `in` the path or the query."""
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": where, "required": where == "path" or name in required, "schema": _plain(field)}
        for name, field in schema["properties"].items()
    ]


def _plain(field: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: an optional one's without its null (absent, not null, in a URL), and
    without pydantic's title and default."""
    kept = [choice for choice in field.get("anyOf", ()) if choice != {"type": "null"}]
    plain = {**field, **kept[0]} if len(kept) == 1 else field
    return {key: value for key, value in plain.items() if key not in ("title", "default", "anyOf")}


def _ref(body: type[BaseModel] | str) -> dict[str, Any]:
    return {"$ref": REF.format(model=body if isinstance(body, str) else body.__name__)}


def _response(reply: Reply) -> dict[str, Any]:
    response: dict[str, Any] = {"description": reply.description}
    if reply.body is not None:
        response["content"] = {reply.media: {"schema": _ref(reply.body)}}
    elif reply.media != "application/json":
        schema = {"type": "string", "format": "binary"} if reply.media.startswith("image/") else {"type": "string"}
        response["content"] = {reply.media: {"schema": schema}}
    if reply.headers:
        response["headers"] = {name: {**HEADERS[name], "required": True} for name in reply.headers}
    if reply.links:
        response["links"] = dict(reply.links)
    return response


def _with_token(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation that asks for a bearer token, and may answer 401."""
    unauthorized = Reply(
        "No token, or not a valid one (WWW-Authenticate says which)", Error, headers=("WWW-Authenticate",)
    )
    return {**operation, "security": [{"bearer": []}],
            "responses": {**operation["responses"], "401": _response(unauthorized)}}  # fmt: skip


def _schemas(contracts: list[Contract], limits: Limits) -> dict[str, Any]:
    """Every model the contracts name, with what they refer to; and the job spec and request under `limits`."""
    models = {
        model
        for contract in contracts
        for model in (contract.body, *(reply.body for reply in contract.replies.values()))
        if isinstance(model, type)
    }
    models.add(Error)  # the 401 of _with_token
    _, top = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    schemas = top.get("$defs", {})
    spec_schema = limited_spec_model(limits).model_json_schema(ref_template=REF)
    schemas.update(spec_schema.pop("$defs", {}))
    schemas["JobSpec"] = spec_schema
    schemas["JobRequest"] = request_schema(spec_schema)
    return schemas
