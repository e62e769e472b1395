"""Each route's contract, declared on the route itself: what it takes and what it may answer.

api/openapi.py builds the OpenAPI document from these and the app's URL rules, so a route can't be
left out of the document or drift from it (tests/test_openapi.py checks that every rule has one).
Bodies are pydantic models (api/schemas.py); path parameters come from the URL rule, typed by its
converter unless the contract names a model for them.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from api.schemas import Error

JSON, PNG, HTML = "application/json", "image/png", "text/html"
View = TypeVar("View", bound=Callable[..., Any])

# Response headers a reply may promise, described once.
HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}},
    "Location": {"description": "The URL of what was made", "schema": {"type": "string"}},
    "WWW-Authenticate": {"description": "Which scheme, and why the token was refused", "schema": {"type": "string"}},
}


@dataclass(frozen=True)
class Reply:
    """One documented answer: its body (a model, a component's name, or none) in a media type, and
    the headers it always carries."""

    description: str
    body: type[BaseModel] | str | None = None
    media: str = JSON
    headers: tuple[str, ...] = ()
    # OpenAPI links: operations that can follow this answer (schemathesis' stateful phase uses them).
    links: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """What a route takes (path, query and body) and what it may answer, by status."""

    operation_id: str
    summary: str
    replies: Mapping[int, Reply]
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # A model, or the name of a component the document builds itself (JobRequest: the deployment's limits).
    body: type[BaseModel] | str | None = None
    body_media: str = JSON


def documented(
    operation_id: str,
    summary: str,
    replies: Mapping[int, Reply],
    path: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | str | None = None,
    body_media: str = JSON,
) -> Callable[[View], View]:
    """Attach a route's contract to its view function (under the route decorator)."""

    def attach(view: View) -> View:
        contract = Contract(operation_id, summary, replies, path, query, body, body_media)
        view.contract = contract  # type: ignore[attr-defined]
        return view

    return attach


def contract_of(view: Callable[..., Any]) -> Contract | None:
    return getattr(view, "contract", None)


def error(description: str, retry: bool = False) -> Reply:
    """An error answer: the Error body, with Retry-After where waiting helps."""
    return Reply(description, Error, headers=("Retry-After",) if retry else ())


def png(description: str) -> Reply:
    return Reply(description, media=PNG)


def html(description: str) -> Reply:
    return Reply(description, media=HTML)


# Every route that reads job records or storage answers 503 while Redis or S3 is down.
UNAVAILABLE = {503: error("Redis or storage unavailable", retry=True)}
