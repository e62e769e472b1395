"""A unit's page is a permalink whose HTML itself carries Open Graph tags (chats' link previews run no
script): its title, its URL and its picture's. Paths that name no unit get the plain shell."""

from html.parser import HTMLParser

import pytest

from api.app import create_app
from shared.settings import Settings

NOWHERE = "127.0.0.1:9"  # the discard port: the page needs no server
BASE = "http://localhost:8000"


class MetaTags(HTMLParser):
    """The <meta> tags of <head>, as {property or name: content}."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self.in_head = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.in_head = self.in_head or tag == "head"
        key = values.get("property") or values.get("name")
        if tag == "meta" and self.in_head and key:
            self.found[key] = values.get("content") or ""

    def handle_endtag(self, tag):
        self.in_head = self.in_head and tag != "head"


def meta_tags(client, path: str) -> dict[str, str]:
    response = client.get(path, base_url=BASE)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    parser = MetaTags()
    parser.feed(response.get_data(as_text=True))
    return parser.found


@pytest.fixture(scope="module")
def client():
    app = create_app(Settings(redis_url=f"redis://{NOWHERE}/0", s3_endpoint_url=f"http://{NOWHERE}"))
    return app.test_client()


def test_a_units_page_carries_its_title_url_and_picture(client):
    tags = meta_tags(client, "/atlas/resnet50/conv2_block1_out/17")
    assert tags["og:title"] == "resnet50 · conv2_block1_out · unit 17"
    assert tags["og:url"] == f"{BASE}/atlas/resnet50/conv2_block1_out/17"
    assert tags["og:image"] == f"{BASE}/v1/units/resnet50/conv2_block1_out/17.png"
    assert "unit 17" in tags["og:image:alt"] and tags["twitter:card"] == "summary"


@pytest.mark.parametrize("path", ["/", "/atlas/vgg16/block1_conv1", "/atlas/vgg16/block1_conv1/64",
                                  "/atlas/vgg16/%3Cscript%3E/1", "/atlas/nonet/block1_conv1/1"])  # fmt: skip
def test_other_paths_and_paths_naming_no_unit_get_no_preview(client, path):
    assert not [key for key in meta_tags(client, path) if key.startswith(("og:", "twitter:"))]
