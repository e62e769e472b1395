"""Who may call /v1, and which jobs they see.

With FILTERVIZ_API_TOKENS_FILE set, every /v1 and /metrics request needs `Authorization: Bearer
<token>` (401 with WWW-Authenticate otherwise); a job belongs to the token that submitted it, and
anyone else's job is a 404, the same answer as a job that doesn't exist. Admin tokens see every
job; metrics tokens read /metrics and nothing else. Without the file the API is open, as the local
stack is, and every caller sees every job.
"""

from flask import Flask, g, request

from api.auth import METRICS, Caller, Tokens
from api.errors import ApiError
from api.throttle import FailedLogins

# The caller of the current request; None when tokens are off.
_CALLER = "filterviz_caller"
REALM = 'Bearer realm="filterviz"'
METRICS_PATH = "/metrics"


def current_caller() -> Caller | None:
    """The token's caller for this request, or None when the API is open."""
    return g.get(_CALLER)


def is_admin() -> bool:
    """Whether the caller holds an admin token (with tokens off, nobody does)."""
    caller = current_caller()
    return caller is not None and caller.admin


def may_see(owner: str | None) -> bool:
    """Whether the current caller may see a job owned by `owner` (None: unknown or submitted with tokens off)."""
    caller = current_caller()
    return caller is None or caller.admin or (owner is not None and owner == caller.name)


def check_priority(priority: int) -> None:
    """403 unless the caller may ask for this priority: raising it (above 0) takes an admin token, so
    with tokens off nobody may; lowering it is anyone's (shared/scheduling.py)."""
    caller = current_caller()
    if priority > 0 and not is_admin():
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


def _guarded(path: str) -> bool:
    """Paths that take a token: the API, and the metrics (they count every tenant's jobs)."""
    return path.startswith(("/v1/", METRICS_PATH))


def _check_scope(caller: Caller, path: str) -> None:
    """403 unless the caller's scope reaches the path: metrics for admin and metrics tokens, the
    API for admin and user tokens."""
    if path.startswith(METRICS_PATH) and not caller.reads_metrics:
        raise ApiError(403, "metrics_not_allowed", "the metrics take a metrics or an admin token")
    if path.startswith("/v1/") and caller.scope == METRICS:
        raise ApiError(403, "api_not_allowed", "a metrics token reads /metrics only; use a user token")


def require_tokens(app: Flask, tokens: Tokens | None, failed: FailedLogins | None = None) -> None:
    """Ask every /v1 and /metrics request for a bearer token from `tokens` (nothing to do when None).

    With `failed`, an address that sent too many wrong tokens gets 429 on every request that
    brings one, a right one included, until its window ends: the answers say nothing to a guesser.
    """
    if tokens is None:
        return

    @app.before_request
    def _authenticate() -> None:
        if not _guarded(request.path):
            return  # the page, its files, health, readiness and the API document stay open
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("this API needs a token: send Authorization: Bearer <token>", "")
        address = request.remote_addr or "unknown"
        if failed is not None:
            failed.check(address)
        caller = tokens.who(token.strip())
        if caller is None:
            if failed is not None:
                failed.count(address)
            raise _unauthorized("the token is not valid", "invalid_token")
        _check_scope(caller, request.path)
        setattr(g, _CALLER, caller)
