"""Presigned URLs: signed for the public endpoint, reused while young (signing is local, no server needed)."""

from urllib.parse import parse_qs, urlparse

from shared.settings import Settings
from shared.storage import Storage


def _storage(**overrides) -> Storage:
    settings = Settings(
        s3_endpoint_url="http://minio:9000", s3_public_endpoint_url="http://localhost:9000", **overrides
    )
    return Storage(settings)


def test_presigned_url_is_signed_for_the_public_endpoint_with_the_configured_lifetime():
    url = urlparse(_storage(presign_seconds=600).presign("jobs/a/grid.png"))
    assert (url.scheme, url.netloc, url.path) == ("http", "localhost:9000", "/filterviz/jobs/a/grid.png")
    assert parse_qs(url.query)["X-Amz-Expires"] == ["600"]


def test_presigned_urls_are_reused_per_key_while_young():
    storage = _storage()
    first = storage.presign("jobs/a/grid.png")
    assert storage.presign("jobs/a/grid.png") == first
    assert storage.presign("jobs/b/grid.png") != first
