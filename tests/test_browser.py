"""End to end in a real browser: Playwright drives Debian's Chromium against the app on localhost.

`.ci/run` installs Chromium with apt (`playwright install` cannot download browsers here). Set CHROMIUM to use
another binary, and CATDOG_SCREENSHOT_DIR to keep the screenshots.

Two apps: `app.py` as people start it (`app_url`), and the same page built in this process with a Grad-CAM that
takes seconds for the first photo (`slow_app`), so that a second photo is classified while the first heatmap is
still on its way, every time.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from appcheck import free_port
from conftest import PETS

from catdog_fastai import load_predictor
from catdog_fastai.app import _Explainer, build_demo, page_answer

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
SLOW = "Bengal_1"  # the photo whose heatmap takes SLOW_S seconds in `slow_app`
SLOW_S = 4.0
HEADLINE, NOTE = "#headline [data-testid=markdown]", "#heat-note [data-testid=markdown]"  # not the progress text
# every change of what the page shows, recorded in the page itself: nothing seen for a moment goes unnoticed
RECORD = """() => {
  window.__seen = [];
  const text = s => (document.querySelector(s)?.innerText || '').trim();
  const snap = () => {
    const img = document.querySelector('#heat img');
    const e = {head: text('#headline [data-testid=markdown]'), label: text('[data-testid=label-output-value]'),
               cap: text('#heat-note [data-testid=markdown]'), heat: img ? img.src : ''};
    const last = window.__seen[window.__seen.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(e)) window.__seen.push(e);
  };
  new MutationObserver(snap).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true});
  snap();
}"""


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


@pytest.fixture(scope="module")
def pair(breeds_model):
    "Two fixture photos whose answers name different classes: the slow one first."
    pred = load_predictor(breeds_model)
    first = PETS / f"{SLOW}.jpg"
    top = pred.predict(first)[0][0]
    second = next(p for p in sorted(PETS.glob("*.jpg")) if pred.predict(p)[0][0] != top)
    return first, second


@pytest.fixture(scope="module")
def slow_app(breeds_model, pair):
    "The page in this process, its examples the two photos, Grad-CAM of the first one slowed down to SLOW_S."
    real = _Explainer.__call__

    def slow(self, image, label=None):
        out = real(self, image, label)
        if SLOW in str(image):
            time.sleep(SLOW_S)
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(_Explainer, "__call__", slow)
    demo = build_demo(breeds_model, [str(p) for p in pair])
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    yield url
    demo.close()
    mp.undo()


def _shot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("CATDOG_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Classify", exact=True).wait_for()
    page.evaluate(RECORD)


def _upload_and_classify(page, path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.wait_for_timeout(500)  # let the preview settle before submitting
    page.get_by_role("button", name="Classify", exact=True).click()


def _expect(breeds_model, photo: Path) -> tuple[str, str, str]:
    "The headline, the Label's heading and the class the caption must name, as the page should show them."
    pred = load_predictor(breeds_model)
    p = pred.predict(photo)
    headline, label, _ = page_answer(pred, p)
    return headline.removeprefix("### "), label["label"], p[0][0]


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').trim() === t", arg=[selector, text]
    )


def _caption(cls: str) -> str:
    return f"Red areas pushed the model most towards {cls}."


def test_upload_a_photo_and_see_its_answer(page, app_url, breeds_model, tmp_path):
    "`app.py` as started by people: species first, the breed answer below it, then the heatmap of that class."
    photo = PETS / "Bengal_1.jpg"
    headline, heading, cls = _expect(breeds_model, photo)
    _open(page, app_url)
    _upload_and_classify(page, photo)
    _wait_text(page, "[data-testid=label-output-value]", heading)
    assert page.locator(HEADLINE).inner_text().strip() == headline
    assert headline.startswith(("Cat (", "Dog (", "This doesn't look like")) and headline.endswith((" %)", "dog"))
    _wait_text(page, NOTE, _caption(cls))  # the Grad-CAM view arrived, naming the class beside it
    shot = _shot(page, tmp_path, "app_predict.png")
    assert shot.stat().st_size > 10_000


def test_clicking_an_example_answers_on_that_click(page, slow_app, breeds_model, pair, tmp_path):
    headline, heading, cls = _expect(breeds_model, pair[1])
    _open(page, slow_app)
    page.locator("button.gallery-item").nth(1).click()  # no click on Classify after it
    _wait_text(page, "[data-testid=label-output-value]", heading)
    assert page.locator(HEADLINE).inner_text().strip() == headline
    _wait_text(page, NOTE, _caption(cls))
    _shot(page, tmp_path, "app_example.png")


def test_a_second_photo_never_shows_the_first_photos_heatmap(page, slow_app, breeds_model, pair, tmp_path):
    "Classify the slow photo, then at once the other: the first heatmap, when it is ready, is dropped."
    (h1, head1, cls1), (h2, head2, cls2) = (_expect(breeds_model, p) for p in pair)
    _open(page, slow_app)
    _upload_and_classify(page, pair[0])
    _wait_text(page, "[data-testid=label-output-value]", head1)
    t0 = time.monotonic()
    _upload_and_classify(page, pair[1])  # the first heatmap is still SLOW_S seconds away
    _wait_text(page, "[data-testid=label-output-value]", head2)
    _wait_text(page, NOTE, _caption(cls2))
    page.wait_for_timeout(max(0.0, SLOW_S + 1.0 - (time.monotonic() - t0)) * 1000)  # past the first one's arrival
    _shot(page, tmp_path, "app_second_photo.png")
    seen = page.evaluate("() => window.__seen")
    beside_second = [s for s in seen if s["label"] == head2]
    assert beside_second and all(s["cap"] in ("", _caption(cls2)) for s in beside_second), seen
    assert not any(s["cap"] == _caption(cls1) for s in seen), seen  # the first heatmap never made it to the page
    heat_srcs = {s["heat"] for s in beside_second if s["cap"] == _caption(cls2)}
    assert all(s["heat"] in heat_srcs | {""} for s in beside_second), seen  # no other picture beside answer 2
    assert page.locator(NOTE).inner_text().strip() == _caption(cls2)


def test_the_caption_always_names_the_class_beside_it(page, slow_app, breeds_model, pair):
    "Across both photos and an example click, every caption on screen names the class its answer shows first."
    want = {_expect(breeds_model, p)[1]: _expect(breeds_model, p)[2] for p in pair}
    _open(page, slow_app)
    _upload_and_classify(page, pair[1])
    page.locator("button.gallery-item").nth(0).click()
    _wait_text(page, NOTE, _caption(want[_expect(breeds_model, pair[0])[1]]))
    seen = page.evaluate("() => window.__seen")
    with_caption = [s for s in seen if s["cap"].startswith("Red areas")]
    assert with_caption and all(s["cap"] == _caption(want[s["label"]]) for s in with_caption), seen


def test_a_bad_file_shows_the_message(page, app_url, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is a text file, not a photo\n")
    _open(page, app_url)
    _upload_and_classify(page, bad)
    page.get_by_text("Can't use this file").first.wait_for()
    _shot(page, tmp_path, "app_bad_file.png")
    _upload_and_classify(page, PETS / "beagle_10.jpg")  # and it keeps serving
    page.wait_for_function("() => document.querySelector('[data-testid=label-output-value]')?.innerText.trim()")
