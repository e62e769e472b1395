"""The web page in a real headless Chromium (Debian's, driven by Playwright) against the real
stack: Redis, SeaweedFS, a Celery worker and gunicorn, started here on free ports."""

import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from api.auth import token_digest
from devstack.local import LocalStack, free_port
from shared.job_errors import MESSAGES
from shared.jobs import JobError, job_store
from tests import keras_files
from tests.conftest import TEST_WEIGHTS
from tests.service_helpers import SMALL_JOB, submit, wait_for

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Deep enough that each chunk takes a while: the job is still running when the test cancels it.
SLOW_JOB = {"layer": "block4_conv1", "filters": {"start": 0, "stop": 64}, "image_size": 64, "steps": 50, "seed": 5}


@pytest.fixture(scope="module")
def stack(service_stack):
    """The session's stack (tests/conftest.py): the page only submits jobs and reads them."""
    return service_stack


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: `make test` installs it (Debian package chromium)"
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to start as root, as CI runs.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack) -> Page:
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def open_page(page: Page, path: str = "/") -> None:
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def fill_job(page: Page, job: dict) -> None:
    page.get_by_label("Layer").select_option(job["layer"])
    page.get_by_label("from").fill(str(job["filters"]["start"]))
    page.get_by_label("to (not included)").fill(str(job["filters"]["stop"]))
    page.get_by_label("Image size (px)").fill(str(job["image_size"]))
    page.get_by_label("Steps", exact=True).fill(str(job["steps"]))
    if "grid" in job:
        page.get_by_label("Grid (cells per side)").fill(str(job["grid"]["n"]))
    page.get_by_label("Seed").fill(str(job["seed"]))


def progress(page: Page) -> tuple[int, int]:
    value, maximum = page.eval_on_selector("#job-progress", "p => [p.value, p.max]")
    return value, maximum


def test_the_form_offers_every_layer_with_the_spec_defaults(page):
    open_page(page)
    layer = page.get_by_label("Layer")
    expect(layer).to_have_value("block5_conv1")
    expect(layer.locator("option")).to_have_count(13)
    expect(layer.locator("option", has_text="block1_conv1 (64 filters)")).to_have_count(1)
    expect(page.get_by_label("from")).to_have_value("0")
    expect(page.get_by_label("to (not included)")).to_have_value("200")
    expect(page.get_by_label("Image size (px)")).to_have_value("128")
    expect(page.get_by_label("Steps")).to_have_value("20")
    expect(page.get_by_label("Grid (cells per side)")).to_have_value("8")
    layer.select_option("block1_conv1")  # fewer filters than the default 200: the range follows
    expect(page.get_by_label("to (not included)")).to_have_value("64")


def test_choosing_a_model_offers_its_layers_and_submits_it(page, stack):
    open_page(page)
    expect(page.get_by_label("Model").locator("option")).to_have_count(10)
    page.get_by_label("Model").select_option("resnet50")
    layer = page.get_by_label("Layer")
    expect(layer).to_have_value("conv4_block1_out")  # the model's own default
    expect(layer.locator("option")).to_have_count(17)
    expect(page.locator("#model-summary")).to_contain_text("ResNet50")
    layer.select_option("conv2_block1_out")
    page.get_by_label("to (not included)").fill("2")
    page.get_by_label("Image size (px)").fill("32")
    page.get_by_label("Steps").fill("1")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job = requests.get(f"{stack.api_url}/v1/jobs/{page.url.rsplit('/', 1)[1]}", timeout=10).json()
    assert (job["params"]["model"], job["params"]["layer"]) == ("resnet50", "conv2_block1_out")


def test_upload_your_own_model_choose_its_layer_and_submit(page, stack, tmp_path):
    open_page(page)
    page.get_by_label("Or your own network").set_input_files(keras_files.with_lambda(tmp_path / "hostile.keras"))
    expect(page.locator("#model-file-error")).to_contain_text("Lambda layer")
    expect(page.get_by_label("Model").locator("option")).to_have_count(10)  # nothing added

    page.get_by_label("What your network takes").select_option("none")
    page.get_by_label("Or your own network").set_input_files(keras_files.small_cnn(tmp_path / "flowers.keras"))
    model = page.get_by_label("Model")
    expect(model).to_have_value(re.compile(r"^upload:[0-9a-f]{64}$"))
    expect(model.locator("option:checked")).to_have_text("flowers.keras")
    layer = page.get_by_label("Layer")
    expect(layer.locator("option")).to_have_text(["edges (8 filters)", "parts (16 filters)", "mixed (16 filters)"])
    expect(page.locator("#model-summary")).to_contain_text("3 convolutions, saved for 32 px")
    fill_job(page, {"layer": "parts", "filters": {"start": 0, "stop": 4}, "image_size": 32, "steps": 2, "seed": 4})
    chosen = model.input_value()
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job = requests.get(f"{stack.api_url}/v1/jobs/{page.url.rsplit('/', 1)[1]}", timeout=10).json()
    assert (job["params"]["model"], job["params"]["layer"]) == (chosen, "parts")


def test_submit_watch_the_job_finish_and_open_a_filter(page, stack):
    job = {**SMALL_JOB, "grid": {"n": 3}}
    open_page(page)
    fill_job(page, job)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]

    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    assert progress(page) == (16, 16)
    expect(page.locator("#job-progress-text")).to_have_text("16 / 16 (100%)")

    side = 3 * job["image_size"] + 2 * 5  # 3 x 3 cells, the default 5 px margin
    grid = page.locator("#job-grid-image")
    expect(grid).to_be_visible()
    page.wait_for_function("() => document.getElementById('job-grid-image').naturalWidth > 0")
    assert grid.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [side, side]
    expect(page.get_by_role("link", name="Download grid.png")).to_have_attribute("href", f"/v1/jobs/{job_id}/grid.png")
    expect(page.locator("#job-params")).to_contain_text(TEST_WEIGHTS)

    thumbnails = page.locator("#job-filters button")
    expect(thumbnails).to_have_count(16)
    manifest = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/manifest.json", timeout=10).json()
    loss = next(f["loss"] for f in manifest["filters"] if f["index"] == 5)
    # By keyboard: focus the thumbnail of filter 5, open it with Enter, close it with Escape.
    page.get_by_role("button", name=re.compile(r"^Filter 5, loss")).focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Filter 5")
    expect(dialog).to_contain_text(f"Final loss {loss:.4f}")
    page.wait_for_function("() => document.getElementById('filter-dialog-image').naturalWidth > 0")
    assert page.locator("#filter-dialog-image").evaluate("img => img.naturalWidth") == job["image_size"]
    unit_link = dialog.get_by_role("link", name="This unit in the atlas")
    expect(unit_link).to_have_attribute("href", f"/atlas/vgg16/{job['layer']}/5")
    ARTIFACTS.mkdir(exist_ok=True)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "web-finished-job.png", full_page=True)

    # The job is listed, with its thumbnail, and its URL opens it again.
    listed = page.locator(f'#recent-jobs li[data-job="{job_id}"]')
    expect(listed.locator("img")).to_have_attribute("src", f"/v1/jobs/{job_id}/thumbnail.png")
    page.wait_for_function(f"() => document.querySelector('li[data-job=\"{job_id}\"] img').naturalWidth > 0")
    open_page(page, f"/jobs/{job_id}")
    expect(page.locator("#job-status")).to_contain_text("succeeded")
    expect(page.locator("#job-filters button")).to_have_count(16)


def test_cancel_a_running_job(page, stack):
    open_page(page)
    fill_job(page, SLOW_JOB)
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#job-status")).to_contain_text("running", timeout=60_000)
    # The first chunk's pictures appear while the job still runs.
    page.wait_for_function("() => document.querySelectorAll('#job-filters button').length >= 4")
    done_before, total = progress(page)
    assert 0 < done_before < total == 64  # the bar moved, and the job is not done yet
    assert 4 <= page.locator("#job-filters button").count() < 64
    page.get_by_role("button", name="Cancel job", exact=True).click()
    expect(page.locator("#job-status")).to_contain_text("canceled")
    expect(page.get_by_role("button", name="Cancel job", exact=True)).to_be_hidden()
    job_id = page.url.rsplit("/", 1)[1]
    assert requests.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10).json()["status"] == "canceled"


def test_a_filter_beyond_the_layer_is_named_next_to_the_field(page, stack):
    def listed_ids() -> list[str]:
        return [job["id"] for job in requests.get(f"{stack.api_url}/v1/jobs", timeout=10).json()["jobs"]]

    ids_before = listed_ids()
    open_page(page)
    fill_job(page, {**SMALL_JOB, "layer": "block1_conv1", "filters": {"start": 0, "stop": 100}})
    page.get_by_role("button", name="Submit").click()
    error = page.locator("#filters-error")
    expect(error).to_have_text("filters: filter 99 is out of range: block1_conv1 has filters 0..63")
    expect(page.get_by_label("to (not included)")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#image-size-error")).to_be_empty()
    assert page.url.endswith("/")
    # No job was created. Ids, not whole resources: each API process signs its own presigned URLs.
    assert listed_ids() == ids_before


def test_a_failed_job_shows_its_error(page, stack):
    job = submit(stack.api_url, SLOW_JOB)
    message = "chunk 0 failed: worker ran out of memory"
    assert job_store(stack.settings).mark_failed(job["id"], JobError("render_failed", message))
    wait_for(stack.api_url, job["id"], {"failed"})
    open_page(page, f"/jobs/{job['id']}")
    expect(page.locator("#job-status")).to_contain_text("failed")
    # The owner sees the code and what to do, not the failure's own words (shared/job_errors.py).
    expect(page.locator("#job-error")).to_have_text(f"render_failed: {MESSAGES['render_failed']}")


def test_an_unknown_job_says_so(page):
    open_page(page, "/jobs/00000000-0000-4000-8000-000000000000")
    expect(page.locator("#job-status")).to_have_text("No such job.")


def test_a_running_job_paints_live_before_its_first_chunk_is_stored(page, stack):
    job = submit(stack.api_url, {**SLOW_JOB, "layer": "block3_conv1", "filters": {"start": 0, "stop": 8},
                                 "steps": 60, "seed": 41, "cache": False})  # fmt: skip
    open_page(page, f"/jobs/{job['id']}")
    forming = page.locator("#job-live-filters img").first
    expect(forming).to_have_attribute("src", re.compile("^data:image/png;base64,"), timeout=120_000)
    assert page.locator("#job-filters button").count() == 0  # nothing stored yet: the frame came first
    expect(page.locator("#job-live")).to_contain_text(re.compile(r"Step \d+ of 60"))
    expect(page.locator("#job-live-filters .loss").first).to_contain_text("loss")
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=180_000)
    expect(page.locator("#job-filters button")).to_have_count(8)
    expect(page.locator("#job-live")).to_be_hidden()  # each forming picture gave way to the stored one


def test_the_compare_view_paints_both_jobs_live(page, stack):
    # Two jobs of one chunk each, on the stack's two workers: each column paints its forming pictures.
    live = {**SLOW_JOB, "layer": "block3_conv1", "filters": {"start": 0, "stop": 4}, "steps": 60, "cache": False}
    jobs = [submit(stack.api_url, {**live, "seed": seed}) for seed in (42, 43)]
    open_page(page, f"/compare?a={jobs[0]['id']}&b={jobs[1]['id']}")
    for column in (2, 3):  # after the row's heading
        forming = page.locator(f"#compare-rows td:nth-child({column}).forming img").first
        expect(forming).to_have_attribute("src", re.compile("^data:image/png;base64,"), timeout=120_000)
        expect(page.locator(f"#compare-rows td:nth-child({column}).forming .loss").first).to_contain_text("loss")
    expect(page.locator("#compare-rows td.compared")).to_have_count(8, timeout=180_000)
    expect(page.locator("#compare-rows td.forming")).to_have_count(0)  # each gave way to its stored picture


# ---- with API tokens: a second API process on the same Redis, S3 and worker, tokens required ----

TOKENS = {"carol": "carol-token-1", "dan": "dan-token-2"}


@pytest.fixture(scope="module")
def token_api(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("web-tokens")
    tokens_file = workdir / "tokens"
    tokens_file.write_text("".join(f"{name} user {token_digest(token)}\n" for name, token in TOKENS.items()))
    api = LocalStack(
        workdir, api_port=free_port(), redis_port=stack.redis_port, s3_port=stack.s3_port,
        extra_env={**stack.extra_env, "FILTERVIZ_API_TOKENS_FILE": str(tokens_file)},
    )  # fmt: skip
    api.start_api()
    yield api.api_url
    api.stop_all(at_once=True)


def test_the_page_asks_for_a_token_keeps_it_in_the_tab_and_works_with_it(browser, token_api):
    # dan's job, which carol must not see.
    other = requests.post(f"{token_api}/v1/jobs", json={**SMALL_JOB, "seed": 77}, timeout=10,
                          headers={"Authorization": f"Bearer {TOKENS['dan']}"})  # fmt: skip
    assert other.status_code == 202
    context = browser.new_context(base_url=token_api, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    token = page.get_by_label("Token", exact=True)
    expect(token).to_be_visible()
    token.fill("not-a-token")
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-error")).to_contain_text("refused")
    token.fill(TOKENS["carol"])
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#token-section")).to_be_hidden()

    fill_job(page, {**SMALL_JOB, "grid": {"n": 3}})
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job_id = page.url.rsplit("/", 1)[1]
    # Results come through fetch with the token: the grid and the thumbnails load.
    page.wait_for_function("() => document.getElementById('job-grid-image').naturalWidth > 0")
    expect(page.locator("#job-filters button")).to_have_count(16)
    page.wait_for_function("() => [...document.querySelectorAll('#job-filters img')].every(i => i.naturalWidth > 0)")
    listed = page.locator("#recent-jobs li[data-job]")
    expect(listed).to_have_count(1)  # carol's job only, not dan's
    expect(listed).to_have_attribute("data-job", job_id)

    # The token lives in this tab's sessionStorage only: no cookie, no localStorage.
    stored = page.evaluate("() => [sessionStorage.getItem('filterviz-token'), localStorage.length, document.cookie]")
    assert stored == [TOKENS["carol"], 0, ""]
    assert context.cookies() == []
    page.screenshot(path=ARTIFACTS / "web-with-token.png", full_page=True)
    # The side-by-side view fetches with the token too (here a job beside itself).
    page.goto(f"/compare?a={job_id}&b={job_id}")
    expect(page.locator("#compare-status")).to_contain_text("succeeded 16/16 · seed: succeeded 16/16")
    page.wait_for_function("() => [...document.querySelectorAll('#compare-rows img')].every(i => i.naturalWidth > 0)")
    expect(page.locator("#compare-rows img")).to_have_count(32)
    # Another tab has no token and asks again.
    second = context.new_page()
    second.goto(f"/jobs/{job_id}")
    expect(second.get_by_label("Token", exact=True)).to_be_visible()
    context.close()
    assert not errors, f"the page's script failed: {errors}"


TINY_ATLAS = {"layers": ["block1_conv1"], "filters_per_layer": 6, "image_size": 32, "steps": 2, "seed": 3}


def test_the_atlas_from_model_to_layer_to_unit_and_back(page, stack):
    started = requests.post(f"{stack.api_url}/v1/atlas", json=TINY_ATLAS, timeout=10)
    assert started.status_code in (200, 202), started.text
    atlas_id = started.json()["id"]
    deadline = time.monotonic() + 120
    while requests.get(f"{stack.api_url}/v1/atlas/{atlas_id}", timeout=10).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, f"atlas {atlas_id} not done in 120 s"
        time.sleep(0.1)

    open_page(page, "/atlas")
    page.get_by_role("link", name="vgg16", exact=True).click()
    expect(page).to_have_url(re.compile(r"/atlas/vgg16$"))
    expect(page.locator("#atlas-list")).to_contain_text("seed, 32 px, seed 3")
    expect(page.locator("tr[data-layer=block1_conv1]")).to_contain_text("succeeded · 6/6")
    page.get_by_role("link", name="block1_conv1", exact=True).click()

    expect(page).to_have_url(re.compile(r"/atlas/vgg16/block1_conv1$"))
    expect(page.locator("#atlas-layer-count")).to_have_text("6 of 64 units rendered")
    thumbnails = page.locator("#atlas-units img")
    expect(thumbnails).to_have_count(6)
    expect(thumbnails.nth(5)).to_have_js_property("complete", True)
    assert thumbnails.nth(5).evaluate("image => image.naturalWidth") == 32
    page.locator("#atlas-units a[href$='/4']").click()

    expect(page).to_have_url(re.compile(r"/atlas/vgg16/block1_conv1/4$"))
    expect(page.locator("#atlas-unit-title")).to_have_text("block1_conv1 · unit 4")
    figure = page.locator("figure.atlas-unit")
    expect(figure).to_contain_text("final loss")
    expect(figure.locator(".unit-state")).to_have_text(re.compile("^(dead|alive)$"))
    expect(figure.locator("img")).to_have_js_property("complete", True)
    assert figure.locator("img").evaluate("image => image.naturalWidth") == 32

    page.go_back()
    expect(page).to_have_url(re.compile(r"/atlas/vgg16/block1_conv1$"))
    expect(page.locator("#atlas-units img")).to_have_count(6)

    # Each view has its permanent URL: opened afresh, the unit's view comes back.
    open_page(page, "/atlas/vgg16/block1_conv1/4")
    expect(page.locator("#atlas-unit-title")).to_have_text("block1_conv1 · unit 4")
    expect(page.locator("#submit")).to_be_hidden()


# ---- methods: the selector and two methods side by side ----

# Small and quick under any method: the first layer, 4 filters, 32 px, a few steps.
TINY_JOB = {"layer": "block1_conv1", "filters": {"start": 0, "stop": 4}, "image_size": 32, "steps": 3, "seed": 8}


def test_choose_a_method_change_a_parameter_and_submit(page, stack):
    listed = requests.get(f"{stack.api_url}/v1/models", timeout=10).json()["methods"]
    fourier = next(method for method in listed if method["name"] == "fourier")
    open_page(page)
    method = page.get_by_label("Method", exact=True)
    expect(method.locator("option")).to_have_text([m["name"] for m in listed])
    method.select_option("fourier")
    # The method's own defaults and bounds, as /v1/models lists them.
    expect(page.get_by_label("Steps", exact=True)).to_have_value(str(fourier["defaults"]["steps"]))
    expect(page.get_by_label("Step size")).to_have_value(str(fourier["defaults"]["step_size"]))
    expect(page.locator("#method-params-inputs [data-param]")).to_have_count(len(fourier["params"]))
    jitter = page.get_by_label("jitter")
    expect(jitter).to_have_value("6")
    assert jitter.evaluate("input => [input.min, input.max, input.step]") == ["0", "64", "1"]
    expect(page.get_by_label("pre_relu")).to_be_checked()

    fill_job(page, TINY_JOB)
    jitter.fill("99")  # above its maximum: named by the field, and no job is made
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#param-jitter-error")).to_have_text("method_params.jitter: 99 is above the limit of 64")
    expect(jitter).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("decay_power")).not_to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/")

    jitter.fill("3")
    page.get_by_label("decay_power").fill("1.5")
    page.get_by_label("pre_relu").uncheck()
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    expect(page.locator("#job-params")).to_contain_text("decay_power 1.5")
    job_id = page.url.rsplit("/", 1)[1]
    manifest = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/manifest.json", timeout=10).json()
    assert manifest["params"]["method"] == "fourier"
    assert manifest["params"]["steps"] == TINY_JOB["steps"]
    defaults = {param["name"]: param["default"] for param in fourier["params"]}
    assert manifest["params"]["method_params"] == {**defaults, "jitter": 3, "decay_power": 1.5, "pre_relu": False}


def test_two_methods_side_by_side_filter_by_filter(page, stack):
    first = submit(stack.api_url, {**TINY_JOB, "method": "seed"})
    wait_for(stack.api_url, first["id"], {"succeeded"})
    open_page(page, f"/jobs/{first['id']}")
    expect(page.locator("#job-status")).to_contain_text("succeeded")
    page.get_by_label("Same filters under").select_option("fourier")
    page.get_by_role("button", name="Render and compare").click()
    expect(page).to_have_url(re.compile(rf"/compare\?a={first['id']}&b=[0-9a-f-]{{36}}$"))
    second_id = page.url.rsplit("=", 1)[1]
    expect(page.locator("#compare-status")).to_contain_text("fourier: succeeded 4/4", timeout=120_000)
    second = requests.get(f"{stack.api_url}/v1/jobs/{second_id}", timeout=10).json()["params"]
    # The same filters, size and seed; the other method's own steps.
    assert (second["method"], second["filters"], second["seed"]) == ("fourier", [0, 1, 2, 3], TINY_JOB["seed"])
    assert second["steps"] == 128

    def check_the_pictures() -> None:
        rows = page.locator("#compare-rows tr")
        expect(rows).to_have_count(4)
        expect(page.locator("#compare-head th")).to_have_text(["Filter", re.compile("^seed"), re.compile("^fourier")])
        loaded = "() => [...document.querySelectorAll('#compare-rows img')].filter(i => i.naturalWidth === 32).length"
        page.wait_for_function(f"{loaded} === 8")
        for job_id, column in ((first["id"], 0), (second_id, 1)):
            manifest = requests.get(f"{stack.api_url}/v1/jobs/{job_id}/manifest.json", timeout=10).json()
            for entry in manifest["filters"]:
                cell = page.locator(f'#compare-rows tr[data-index="{entry["index"]}"] td').nth(column)
                state = "dead" if entry["dead"] else "revived" if entry["revived"] else "alive"
                expect(cell).to_contain_text(f"loss {entry['loss']:.3f} {state}")
                expect(cell.get_by_role("link", name="picture")).to_have_attribute(
                    "href", f"/v1/jobs/{job_id}/filters/{entry['index']}.png"
                )

    check_the_pictures()
    page.screenshot(path=ARTIFACTS / "web-compare.png", full_page=True)
    # Its URL is permanent: opened afresh, the same comparison.
    open_page(page, f"/compare?a={first['id']}&b={second_id}")
    check_the_pictures()
    expect(page.locator("#submit")).to_be_hidden()
    page.get_by_role("link", name="fourier").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{second_id}$"))


def test_the_same_filters_under_two_weights_side_by_side(page, stack, tmp_path):
    from worker.model import load_network

    weights = tmp_path / "fine-tuned.weights.h5"
    load_network("random:5").network.save_weights(weights)
    uploaded = requests.post(f"{stack.api_url}/v1/models", data={"architecture": "vgg16"},
                             files={"file": weights.read_bytes()}, timeout=60).json()  # fmt: skip
    before, after = (submit(stack.api_url, {**TINY_JOB, **extra}) for extra in ({}, {"weights": uploaded["id"]}))
    open_page(page, f"/compare?a={before['id']}&b={after['id']}")
    expect(page.locator("#compare-status")).to_contain_text(f"{uploaded['id']}: succeeded 4/4", timeout=120_000)
    expect(page.locator("#compare-status")).to_contain_text(f"{TEST_WEIGHTS}: succeeded 4/4")
    expect(page.locator("#compare-head th")).to_have_text(
        ["Filter", re.compile(f"^{TEST_WEIGHTS}"), re.compile("^upload:")]
    )
    expect(page.locator("#compare-error-line")).to_have_text("")  # nothing but the weights differs
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-rows img')].filter(i => i.naturalWidth === 32).length === 8"
    )
    page.screenshot(path=ARTIFACTS / "web-compare-weights.png", full_page=True)


def test_choose_a_neuron_objective_and_see_seed_refuse_it(page, stack):
    open_page(page)
    expect(page.locator("#neuron-position")).to_be_hidden()
    page.get_by_label("Objective").select_option("neuron")
    expect(page.locator("#objective-summary")).to_contain_text("one position")
    page.get_by_label("across, 0 (left) to 1 (right)").fill("0.25")
    fill_job(page, TINY_JOB)
    page.get_by_role("button", name="Submit").click()  # seed: its channel's mean only
    expect(page.locator("#objective-error")).to_contain_text("method seed maximises its channel's mean alone")
    page.get_by_label("Method", exact=True).select_option("fourier")
    page.get_by_label("Steps", exact=True).fill("2")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job = requests.get(f"{stack.api_url}/v1/jobs/{page.url.rsplit('/', 1)[1]}", timeout=10).json()
    assert job["params"]["objective"] == [{"weight": 1.0, "kind": "neuron", "x": 0.25, "y": 0.5}]
    expect(page.locator("#job-params")).to_contain_text("neuron (x 0.25, y 0.5)")


def test_several_pictures_of_each_filter_lie_side_by_side(page, stack):
    open_page(page)
    page.get_by_label("Method", exact=True).select_option("fourier")
    fill_job(page, {**TINY_JOB, "filters": {"start": 0, "stop": 2}, "steps": 2})
    page.get_by_label("Pictures of each filter").fill("3")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job = requests.get(f"{stack.api_url}/v1/jobs/{page.url.rsplit('/', 1)[1]}", timeout=10).json()
    assert [term["kind"] for term in job["params"]["objective"]] == ["channel", "diversity"]
    expect(page.locator("#job-params")).to_contain_text("diversity (n 3)")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#job-filters img')].filter(i => i.naturalWidth === 96).length === 2"
    )
    # Shown at the list's height, three pictures wide.
    sizes = page.locator("#job-filters img").evaluate_all("images => images.map(i => [i.width, i.height])")
    assert sizes == [[192, 64]] * 2, sizes


def test_choose_a_class_by_its_name_and_see_its_logits_painted(page, stack):
    open_page(page)
    page.get_by_label("Model").select_option("mobilenet_v2")
    page.get_by_label("Objective").select_option("class")
    expect(page.get_by_label("Layer")).to_have_value("logits")  # where a class is read
    expect(page.locator("#class-names option[value='flamingo']")).to_have_count(1)
    page.get_by_label("Class (a name or its index)").fill("goldfish")
    page.get_by_label("Method", exact=True).select_option("fourier")
    fill_job(page, {**TINY_JOB, "layer": "logits", "filters": {"start": 0, "stop": 2}, "steps": 2})
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
    job = requests.get(f"{stack.api_url}/v1/jobs/{page.url.rsplit('/', 1)[1]}", timeout=10).json()
    assert job["params"]["objective"] == [{"weight": 1.0, "kind": "class", "class": 1, "probability": False}]
    expect(page.locator("#job-params")).to_contain_text("class (class 1, probability false)")


def test_a_layer_no_atlas_covers_renders_its_units_as_they_come_into_view(page, stack):
    open_page(page, "/atlas/vgg16/block2_conv2")
    expect(page.locator("#atlas-on-demand")).to_contain_text("No atlas covers block2_conv2 yet")
    expect(page.locator("#atlas-units li")).to_have_count(128)
    # The first row is in view: its pictures render, a few at a time, with nobody submitting a job.
    loaded = "() => [...document.querySelectorAll('#atlas-units img')].filter(i => i.naturalWidth === 64).length"
    page.wait_for_function(f"{loaded} >= 6", timeout=120_000)
    page.screenshot(path=ARTIFACTS / "web-atlas-on-demand.png", full_page=False)
    page.locator("#atlas-units li a").first.click()
    expect(page).to_have_url(re.compile(r"/atlas/vgg16/block2_conv2/0$"))
    page.wait_for_function("() => document.querySelector('.atlas-unit img')?.naturalWidth === 64")
    expect(page.locator(".atlas-unit figcaption")).to_contain_text("rendered on demand")
