"""Refuse to run a service with the secrets the documentation shows, outside the local stack.

The defaults (in shared/settings.py, docker-compose.yml and .env.example) are public: a stack that
keeps them is open to anyone who can reach it. `make up` sets FILTERVIZ_ALLOW_DEFAULT_SECRETS=1 (its
services listen on 127.0.0.1 only); docker compose does not, so each secret must be set in `.env`.
"""

import os
from collections.abc import Mapping
from urllib.parse import urlparse

ALLOW = "FILTERVIZ_ALLOW_DEFAULT_SECRETS"
# Variable -> its documented default. REDIS_URL's password is checked on its own (see _redis_password).
DEFAULTS = {
    "S3_SECRET_ACCESS_KEY": "filterviz-secret",
    "S3_ROOT_SECRET_ACCESS_KEY": "filterviz-root-secret",
    "FLOWER_PASSWORD": "filterviz-flower",
}
REDIS_PASSWORD = "REDIS_PASSWORD"
DEFAULT_REDIS_PASSWORD = "filterviz-redis"
# Settings' own default when S3_SECRET_ACCESS_KEY is not set at all.
UNSET_DEFAULTS = {"S3_SECRET_ACCESS_KEY": "filterviz-secret"}


class DefaultSecretsError(RuntimeError):
    """A documented default secret is in use and FILTERVIZ_ALLOW_DEFAULT_SECRETS is not set."""


def _redis_password(env: Mapping[str, str]) -> str | None:
    url = env.get("REDIS_URL")
    return urlparse(url).password if url else None


def defaults_in_use(env: Mapping[str, str]) -> list[str]:
    """Names of the variables that hold a documented default secret (unset ones with a default count)."""
    found = [name for name, default in DEFAULTS.items() if (env.get(name) or UNSET_DEFAULTS.get(name)) == default]
    if _redis_password(env) == DEFAULT_REDIS_PASSWORD:
        found.append(REDIS_PASSWORD)
    return found


def _environment() -> dict[str, str]:
    """The variables checked here, from this process' environment (each named, for the docs' checks)."""
    read = {
        ALLOW: os.environ.get("FILTERVIZ_ALLOW_DEFAULT_SECRETS"),
        "REDIS_URL": os.environ.get("REDIS_URL"),
        "S3_SECRET_ACCESS_KEY": os.environ.get("S3_SECRET_ACCESS_KEY"),
        "S3_ROOT_SECRET_ACCESS_KEY": os.environ.get("S3_ROOT_SECRET_ACCESS_KEY"),
        "FLOWER_PASSWORD": os.environ.get("FLOWER_PASSWORD"),
    }
    return {name: value for name, value in read.items() if value}


def refuse_default_secrets(service: str, env: Mapping[str, str] | None = None) -> None:
    """Raise DefaultSecretsError, saying what to put in .env, unless no default secret is in use or
    FILTERVIZ_ALLOW_DEFAULT_SECRETS=1 allows them."""
    env = _environment() if env is None else env
    if env.get(ALLOW, "").strip().lower() in {"1", "true", "yes"}:
        return
    found = defaults_in_use(env)
    if not found:
        return
    lines = "\n".join(f"  {name}=<a long random value, e.g. from `openssl rand -hex 24`>" for name in found)
    raise DefaultSecretsError(
        f"{service} refuses to start: {', '.join(found)} still hold the documented default, which anyone can read.\n"
        f"Put these lines in the .env file beside docker-compose.yml (or in this service's environment):\n{lines}\n"
        f"then run `docker compose up` again. For a throwaway local stack only, {ALLOW}=1 allows the defaults."
    )
