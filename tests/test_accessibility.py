"""Accessibility of every view of the web page, checked by axe-core (installed by `make install` from
package.json) in the real headless Chromium against the real stack, in light and dark colour schemes.
Any violation of impact serious or critical fails, named by rule, targets and axe's help text."""

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.service_helpers import SMALL_JOB, submit, wait_for
from tests.test_web import TINY_ATLAS, open_page
from tests.test_web import browser as browser
from tests.test_web import stack as stack
from tests.test_web import token_api as token_api

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
BLOCKING_IMPACTS = {"serious", "critical"}


@pytest.fixture(scope="module")
def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: `make install` installs axe-core from package.json (npm ci)"
    return AXE.read_text()


@pytest.fixture(scope="module")
def finished_job(stack) -> str:
    job = submit(stack.api_url, SMALL_JOB)
    wait_for(stack.api_url, job["id"], {"succeeded"})
    return job["id"]


@pytest.fixture(scope="module")
def atlas(stack) -> str:
    started = requests.post(f"{stack.api_url}/v1/atlas", json=TINY_ATLAS, timeout=10)
    assert started.status_code in (200, 202), started.text
    wait_for_atlas(stack.api_url, started.json()["id"])
    return started.json()["id"]


def wait_for_atlas(api: str, atlas_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(f"{api}/v1/atlas/{atlas_id}", timeout=10).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, f"atlas {atlas_id} not done in {timeout} s"
        time.sleep(0.1)


# ---- the views: each opens one state of the page and waits until it is drawn ----
# A new page, or a new state of one, gets a line in VIEWS, so that axe checks it too.


def home(page: Page, job_id: str) -> None:
    open_page(page)
    expect(page.locator(f'#recent-jobs li[data-job="{job_id}"]')).to_be_visible()


def form_with_an_error(page: Page, job_id: str) -> None:
    open_page(page)
    page.get_by_label("Layer").select_option("block1_conv1")
    page.get_by_label("to (not included)").fill("100")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#filters-error")).not_to_be_empty()


def finished_job_view(page: Page, job_id: str) -> None:
    open_page(page, f"/jobs/{job_id}")
    expect(page.locator("#job-status")).to_contain_text("succeeded")
    expect(page.locator("#job-filters button")).to_have_count(16)


def filter_dialog(page: Page, job_id: str) -> None:
    finished_job_view(page, job_id)
    page.get_by_role("button", name=re.compile(r"^Filter 5, loss")).click()
    expect(page.get_by_role("dialog")).to_be_visible()


def form_with_a_method_parameter_error(page: Page, job_id: str) -> None:
    open_page(page)
    page.get_by_label("Method", exact=True).select_option("maco")
    page.get_by_label("crops").fill("99")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#param-crops-error")).not_to_be_empty()


def compare_view(page: Page, job_id: str) -> None:
    # The finished job's filters under another method, with few steps (the cache serves the second scheme).
    job = page.request.get(f"/v1/jobs/{job_id}").json()["params"]
    same = {name: job[name] for name in ("layer", "filters", "image_size", "grid", "seed")}
    other = page.request.post("/v1/jobs", data={**same, "method": "fourier", "steps": 2}).json()["id"]
    open_page(page, f"/compare?a={job_id}&b={other}")
    expect(page.locator("#compare-status")).to_contain_text("fourier: succeeded", timeout=120_000)
    page.wait_for_function("() => [...document.querySelectorAll('#compare-rows img')].every(i => i.naturalWidth > 0)")


def atlas_models(page: Page, job_id: str) -> None:
    open_page(page, "/atlas")
    expect(page.get_by_role("link", name="vgg16", exact=True)).to_be_visible()


def atlas_model(page: Page, job_id: str) -> None:
    open_page(page, "/atlas/vgg16")
    expect(page.locator("tr[data-layer=block1_conv1]")).to_contain_text("succeeded")


def atlas_layer(page: Page, job_id: str) -> None:
    open_page(page, "/atlas/vgg16/block1_conv1")
    expect(page.locator("#atlas-units img")).to_have_count(6)


def atlas_unit(page: Page, job_id: str) -> None:
    open_page(page, "/atlas/vgg16/block1_conv1/4")
    expect(page.locator("figure.atlas-unit img")).to_have_js_property("complete", True)


def atlas_layer_on_demand(page: Page, job_id: str) -> None:
    open_page(page, "/atlas/vgg16/block2_conv2")
    expect(page.locator("#atlas-on-demand")).to_be_visible()
    page.wait_for_function("() => [...document.querySelectorAll('#atlas-units img')].some(i => i.naturalWidth > 0)")


VIEWS: dict[str, Callable[[Page, str], None]] = {
    "home": home,
    "form-with-an-error": form_with_an_error,
    "finished-job": finished_job_view,
    "filter-dialog": filter_dialog,
    "form-with-a-method-parameter-error": form_with_a_method_parameter_error,
    "compare": compare_view,
    "atlas": atlas_models,
    "atlas-model": atlas_model,
    "atlas-layer": atlas_layer,
    "atlas-unit": atlas_unit,
    "atlas-layer-on-demand": atlas_layer_on_demand,
}


def serious_violations(page: Page, axe_source: str) -> str:
    """Run axe on the page as it is drawn now. Each serious or critical violation: the rule, its impact
    and help text, then each element at fault with what axe says is wrong; empty when there is none."""
    page.add_script_tag(content=axe_source)
    violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    lines = []
    for rule in violations:
        if rule["impact"] in BLOCKING_IMPACTS:
            lines.append(f"{rule['id']} ({rule['impact']}): {rule['help']} <{rule['helpUrl']}>")
            for node in rule["nodes"]:
                why = " ".join(node["failureSummary"].split())
                lines.append(f"  at {' '.join(map(str, node['target']))}: {why}")
    return "\n".join(lines)


@pytest.fixture(params=["light", "dark"])
def scheme(request) -> str:
    return request.param


@pytest.fixture
def new_page(browser, scheme) -> Iterator[Callable[[str], Page]]:
    """Opens a page on a base URL in a fresh browser context with the colour scheme; closed after."""
    contexts = []

    def open_on(base_url: str) -> Page:
        # bypass_csp: the page's CSP (rightly) refuses inline scripts, and axe comes in as one.
        context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900}, bypass_csp=True,
                                      color_scheme=scheme)  # fmt: skip
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page

    yield open_on
    for context in contexts:
        context.close()


@pytest.mark.parametrize("view", VIEWS)
def test_no_serious_accessibility_violation(view, scheme, new_page, stack, finished_job, atlas, axe_source):
    page = new_page(stack.api_url)
    VIEWS[view](page, finished_job)
    found = serious_violations(page, axe_source)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"a11y-{view}-{scheme}.png", full_page=True)
    assert not found, f"axe found serious or critical violations on {view} ({scheme}):\n{found}"


def test_the_token_prompt_has_no_serious_accessibility_violation(scheme, new_page, token_api, axe_source):
    page = new_page(token_api)
    page.goto("/")
    page.get_by_label("Token", exact=True).fill("not-a-token")
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-error")).to_contain_text("refused")
    found = serious_violations(page, axe_source)
    assert not found, f"axe found serious or critical violations on the token prompt ({scheme}):\n{found}"
