"""Signing of webhook deliveries, as the Standard Webhooks spec says: the standard library alone, so
that the settings can check the secret without importing the job store.

Each owner's deliveries are signed with a secret of its own, derived from the master secret
(FILTERVIZ_WEBHOOK_SECRET) and the owner's name with HMAC-SHA256: nothing is stored, a tenant who
knows its own secret can't sign for another, and the master never leaves the service."""

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


# Keeps owner secrets apart from anything else the master might ever key.
DERIVATION_LABEL = b"filterviz webhook secret of owner "


def secret_bytes(secret: str) -> bytes:
    """A Standard Webhooks secret: base64, optionally after "whsec_" (as its libraries read it); never empty."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError("FILTERVIZ_WEBHOOK_SECRET must be base64 (e.g. whsec_ and 32 random bytes)") from None
    if not key:
        raise ValueError("FILTERVIZ_WEBHOOK_SECRET is empty: nothing could be signed with it")
    return key


def owner_secret(master: str, owner: str | None) -> str:
    """The Standard Webhooks secret (whsec_ and base64) of one owner's deliveries: HMAC-SHA256 of its
    name under the master secret. None (tokens off: one tenant) has one too, never the master itself."""
    derived = hmac.new(secret_bytes(master), DERIVATION_LABEL + (owner or "").encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(derived).decode()


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: v1, then the base64 HMAC-SHA256 of "id.timestamp.body"."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery attempt."""
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
