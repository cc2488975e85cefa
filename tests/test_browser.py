"""End to end in a real browser: Playwright drives Debian's Chromium against `app.py` on localhost.

`.ci/run` installs Chromium with apt (`playwright install` cannot download browsers here). Set CHROMIUM to use
another binary, and CATDOG_SCREENSHOT_DIR to keep the screenshots.
"""

import os
import shutil
from pathlib import Path

import pytest
from conftest import PETS

from catdog_fastai import load_predictor

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set CHROMIUM=/path/to/chrome)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("CATDOG_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


def _upload_and_classify(page, url: str, path: Path) -> None:
    page.goto(url)
    page.get_by_role("button", name="Classify", exact=True).wait_for()
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.wait_for_timeout(500)  # let the preview settle before submitting
    page.get_by_role("button", name="Classify", exact=True).click()


def test_upload_a_photo_and_see_its_label(page, app_url, breeds_model, tmp_path):
    photo = PETS / "Bengal_1.jpg"
    pred = load_predictor(breeds_model)
    p = pred.predict(photo, top_k=3, calibrated=True)
    want = pred.describe(p)  # the answer in words, as catdog-predict prints it
    _upload_and_classify(page, app_url, photo)
    heading = page.locator("[data-testid=label-output-value]")
    heading.wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=label-output-value]')?.innerText.trim()")
    assert heading.inner_text().strip() == want
    page.get_by_text("pushed the model most").wait_for()  # the Grad-CAM view arrived too
    shot = _shot(page, tmp_path, "app_predict.png")
    assert shot.stat().st_size > 10_000


def test_a_bad_file_shows_the_message(page, app_url, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is a text file, not a photo\n")
    _upload_and_classify(page, app_url, bad)
    page.get_by_text("Can't use this file").first.wait_for()
    _shot(page, tmp_path, "app_bad_file.png")
    _upload_and_classify(page, app_url, PETS / "beagle_10.jpg")  # and it keeps serving
    page.wait_for_function("() => document.querySelector('[data-testid=label-output-value]')?.innerText.trim()")
