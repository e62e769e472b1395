"""Refuse the documented default secrets where a service would be exposed with them.

The defaults (shared/settings.py, .env.example, deploy/k8s' example Secret) are public. On loopback
they harm no one: `make up` listens on 127.0.0.1, and compose publishes its ports there unless
FILTERVIZ_BIND_ADDR says otherwise. A stack published on another address, or run in Kubernetes,
with one of them is open to whoever reaches it, so it doesn't start. Compose makes random secrets
per install (provision/secrets.py): a default there is one somebody put in .env.
"""

import ipaddress
import os
from collections.abc import Mapping, Sequence
from urllib.parse import unquote, urlsplit

from shared.settings import Settings

# Variable -> the values the documentation shows for it.
DEFAULTS = {
    "S3_SECRET_ACCESS_KEY": {"filterviz-secret", "change-me"},
    "S3_ROOT_SECRET_ACCESS_KEY": {"filterviz-root-secret"},
    "REDIS_PASSWORD": {"filterviz-redis"},
    "FLOWER_PASSWORD": {"filterviz-flower"},
}
LOOPBACK_NAMES = {"localhost"}


class DefaultSecretsError(RuntimeError):
    """A documented default secret is in use where the service is exposed."""


def settings_secrets(settings: Settings) -> dict[str, str | None]:
    """The secrets a service's settings hold, by variable name."""
    return {
        "S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key,
        "S3_ROOT_SECRET_ACCESS_KEY": settings.s3_root_secret_access_key,
        "REDIS_PASSWORD": unquote(password) if (password := urlsplit(settings.redis_url).password) else None,
    }


def defaults_in_use(secrets: Mapping[str, str | None]) -> list[str]:
    """Names of the variables that hold a documented default."""
    return [name for name, value in secrets.items() if value in DEFAULTS.get(name, ())]


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: reachable from elsewhere


def exposure(env: Mapping[str, str], published: str | None, listening: Sequence[str] = ()) -> str | None:
    """Why a service would be reachable from other hosts, or None where only this host reaches it.

    In Kubernetes, always. Under compose, by the address its ports are `published` on
    (FILTERVIZ_BIND_ADDR, which compose passes in); elsewhere, by the addresses it listens on
    (`host:port`, as gunicorn's bind setting has them)."""
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "it runs in Kubernetes"
    if published:
        return None if _is_loopback(published) else f"its ports are published on {published} (FILTERVIZ_BIND_ADDR)"
    # A Unix socket (unix:/path) or an inherited descriptor (fd://3) is local to this host.
    network = [address for address in listening if not address.startswith(("unix:", "fd://"))]
    exposed = [address for address in network if not _is_loopback(address.rsplit(":", 1)[0])]
    return f"it listens on {', '.join(exposed)}" if exposed else None


def refuse_default_secrets(
    service: str,
    secrets: Mapping[str, str | None],
    env: Mapping[str, str] = os.environ,
    listening: Sequence[str] = (),
    *,
    published: str | None,
) -> None:
    """Raise DefaultSecretsError, saying what to change, where a default is in use and the service exposed
    (`published`: FILTERVIZ_BIND_ADDR, ExposureSettings' bind_addr)."""
    found = defaults_in_use(secrets)
    why = exposure(env, published, listening)
    if not found or why is None:
        return
    lines = "\n".join(f"  {name}=<a long random value, e.g. from `openssl rand -hex 24`>" for name in found)
    raise DefaultSecretsError(
        f"{service} refuses to start: {', '.join(found)} {'holds' if len(found) == 1 else 'hold'} a documented "
        f"default, which anyone can "
        f"read, and {why}.\nSet them (in compose, in the .env file beside docker-compose.yml, or remove them "
        f"there to get random ones):\n{lines}"
    )
