"""Signing of webhook deliveries, as the Standard Webhooks spec says: the standard library alone, so
that the settings can check the secret without importing the job store."""

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_bytes(secret: str) -> bytes:
    """A Standard Webhooks secret: base64, optionally after "whsec_" (as its libraries read it)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError("FILTERVIZ_WEBHOOK_SECRET must be base64 (e.g. whsec_ and 32 random bytes)") from None


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
