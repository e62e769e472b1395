"""Who may call /v1, and which jobs they see.

With FILTERVIZ_API_TOKENS_FILE set, every /v1 request needs `Authorization: Bearer <token>` (401
with WWW-Authenticate otherwise); a job belongs to the token that submitted it, and anyone else's
job is a 404, the same answer as a job that doesn't exist. Admin tokens see every job. Without the
file the API is open, as the local stack is, and every caller sees every job.
"""

from flask import Flask, g, request

from api.errors import ApiError
from shared.auth import Caller, Tokens

# The caller of the current request; None when tokens are off.
_CALLER = "filterviz_caller"
REALM = 'Bearer realm="filterviz"'


def current_caller() -> Caller | None:
    """The token's caller for this request, or None when the API is open."""
    return g.get(_CALLER)


def may_see(owner: str | None) -> bool:
    """Whether the current caller may see a job owned by `owner` (None: unknown or submitted with tokens off)."""
    caller = current_caller()
    return caller is None or caller.admin or (owner is not None and owner == caller.name)


def check_priority(priority: int) -> None:
    """403 unless the caller may ask for this priority: raising it (above 0) takes an admin token, so
    with tokens off nobody may; lowering it is anyone's (shared/scheduling.py)."""
    caller = current_caller()
    if priority > 0 and not (caller and caller.admin):
        who = "this token is not an admin's" if caller else "this API has no tokens, so no caller is an admin"
        raise ApiError(403, "priority_not_allowed", f"a priority above 0 needs an admin token: {who}",
                       [{"field": "priority", "reason": "above 0 needs an admin token"}])  # fmt: skip


def listed_owner() -> str | None:
    """Whose jobs a listing shows: the caller's own, or everyone's (None) for admins and an open API."""
    caller = current_caller()
    return None if caller is None or caller.admin else caller.name


def _unauthorized(message: str, error: str) -> ApiError:
    challenge = f'{REALM}, error="{error}"' if error else REALM
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def require_tokens(app: Flask, tokens: Tokens | None) -> None:
    """Ask every /v1 request for a bearer token from `tokens` (nothing to do when None)."""
    if tokens is None:
        return

    @app.before_request
    def _authenticate() -> None:
        if not request.path.startswith("/v1/"):
            return  # the page, its files, health, readiness and the API document stay open
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("this API needs a token: send Authorization: Bearer <token>", "")
        caller = tokens.who(token.strip())
        if caller is None:
            raise _unauthorized("the token is not valid", "invalid_token")
        setattr(g, _CALLER, caller)
