"""Security headers on every response: no MIME sniffing, no framing, and a strict CSP for the page.

The page loads only its own script, stylesheet and images (results come through the API, same
origin, as blob: URLs where a token is needed); nothing inline, nothing from elsewhere.
"""

from flask import Flask, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(app: Flask) -> None:
    """Set SECURITY_HEADERS on every response of app, errors included."""

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
