"""The API's side of webhooks (shared/webhooks.py): check the one a request asks for, tell a job's
webhook that the API canceled it (the workers' lifecycle tells every other move), and hand a token's
owner the secret its deliveries are signed with (GET /v1/webhook-secret)."""

from typing import Any

from flask import Blueprint
from pydantic import ValidationError

from api.access import current_caller
from api.contract import Reply, documented, error
from api.errors import ApiError
from api.schemas import WebhookSecret
from api.services import Services, current_services
from shared.spec import describe_problems
from shared.webhook_signing import owner_secret
from shared.webhooks import WebhookPolicy, WebhookRequest, stored_form

webhooks = Blueprint("webhooks", __name__, url_prefix="/v1")


def _disabled() -> ApiError:
    reason = "webhooks are off here: the operator has not set FILTERVIZ_WEBHOOK_SECRET"
    return ApiError(422, "webhooks_disabled", reason, [{"field": "webhook", "reason": reason}])


@webhooks.get("/webhook-secret")
@documented("getWebhookSecret", "The secret this token's webhooks are signed with (Standard Webhooks)", replies={
    200: Reply("The owner and its secret", WebhookSecret),
    422: error("Webhooks are off here (no FILTERVIZ_WEBHOOK_SECRET)"),
})  # fmt: skip
def get_webhook_secret():
    """The secret this token's webhooks are signed with (Standard Webhooks: whsec_ and base64), for its
    receiver to verify them. Each owner has its own, derived from the master secret: it verifies
    this owner's deliveries and no one else's. Readable whenever the token asks (README: Webhooks)."""
    master = current_services().settings.webhook_secret
    if not master:
        raise _disabled()
    caller = current_caller()
    owner = caller.name if caller else None
    return {"owner": owner, "secret": owner_secret(master, owner)}, 200, {"Cache-Control": "no-store"}


def admissible_webhook(fields: dict[str, Any], services: Services) -> str | None:
    """The webhook to keep with the job (None when none was asked for), or 422 naming the problem:
    a bad field, a URL that may not be called (SSRF), or webhooks not configured."""
    if not fields:
        return None
    if not services.settings.webhook_secret:
        raise _disabled()
    try:
        hook = WebhookRequest.model_validate(fields, context={"policy": WebhookPolicy.of(services.settings)})
    except ValidationError as error:
        problems = describe_problems(error)
        raise ApiError(422, "invalid_webhook", f"{problems[0]['field']}: {problems[0]['reason']}", problems) from None
    return stored_form(hook)


def request_schema(spec_schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a job request: the job spec's fields and the webhook's (OpenAPI)."""
    webhook = WebhookRequest.model_json_schema()["properties"]
    webhook["webhook"]["description"] = "http(s) URL called on the events (Standard Webhooks signature)"
    return {**spec_schema, "title": "JobRequest", "properties": {**spec_schema["properties"], **webhook}}
