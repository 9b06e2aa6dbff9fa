"""The playground as a person uses it: a real headless Chromium (Debian's ``chromium``) driven by
Playwright loads the page, trains a linear and a relu network on the circles, sees the doctor's lint,
gets a refusal on the page for a bad value, downloads the ``.keras`` file (loaded in lamina and in
Keras with equal predictions) and takes a screenshot that is not blank.

Skipped only where chromium or Playwright is absent (never in CI, which installs both)."""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_missing = [what for what, ok in (("Debian's chromium (apt-get install chromium)", CHROMIUM),) if not ok]
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    _missing.append("Playwright for Python (pip install playwright)")
try:
    import aiohttp  # noqa: F401
except ImportError:
    _missing.append("the playground extra (aiohttp)")
if _missing and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the playground's browser tests, but these are missing: {', '.join(_missing)}")
if _missing:
    pytest.skip(f"browser tests need {' and '.join(_missing)}", allow_module_level=True)

import lamina  # noqa: E402
from lamina.playground.server import PlaygroundServer  # noqa: E402


@pytest.fixture(scope="module")
def page():
    srv = PlaygroundServer().start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(srv.url)
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.errors = errors
        yield pg
        browser.close()
    srv.stop()


def _wait(condition, timeout: float = 30.0, what="") -> None:
    """Poll from Python: the page's Content-Security-Policy (no eval) stays on, so Playwright's
    wait_for_function, which evaluates a string in the page, cannot be used."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def _choose(pg, activation: str) -> None:
    """Pick the circles and set every hidden layer's activation, as a person does with the menus."""
    pg.select_option("#dataset", "circles")
    for select in pg.query_selector_all("#layers .activation"):
        select.select_option(activation)
    want = f"layers=8%3A{activation}%2C8%3A{activation}"
    _wait(lambda: want in (pg.get_attribute("body", "data-settings") or "")
          and pg.get_attribute("body", "data-step") == "0",
          what=lambda: f"the page to train {want}; it shows {pg.get_attribute('body', 'data-settings')}, step "
                       f"{pg.get_attribute('body', 'data-step')}, error {pg.inner_text('#error')!r}")


def _train_until(pg, condition, what: str) -> None:
    pg.click("#play")
    try:
        _wait(condition, what=what)
    finally:
        pg.click("#pause")


def _number(pg, selector: str) -> float:
    return float(pg.inner_text(selector))


def test_linear_network_stays_near_chance_then_relu_learns_the_circles(page):
    _choose(page, "linear")
    _train_until(page, lambda: _number(page, "#epoch") >= 20, "20 epochs")
    assert _number(page, "#test-accuracy") < 0.7
    assert "no-nonlinearity" in page.inner_text("#lint")  # the doctor says why
    _choose(page, "relu")
    _train_until(page, lambda: _number(page, "#test-accuracy") > 0.95, "test accuracy > 0.95")
    assert _number(page, "#test-accuracy") > 0.95
    assert "No lint findings" in page.inner_text("#lint")
    assert int(page.inner_text("#fps")) >= 1 and not page.errors


def test_softmax_on_one_output_unit_shows_the_lint_error(page):
    page.select_option("#output-activation", "softmax")
    page.wait_for_selector("#lint li.error", timeout=30_000)
    text = page.inner_text("#lint")
    assert "softmax-single-unit" in text and "always 1.0" in text
    page.select_option("#output-activation", "auto")
    _wait(lambda: page.query_selector("#lint li.error") is None, what="the lint error to go")


def test_an_out_of_range_value_is_refused_on_the_page(page):
    page.fill("#layers .layer-card:first-child .units", "100")
    page.dispatch_event("#layers .layer-card:first-child .units", "change")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "from 1 to 64. Received: layers[1].units=100" in page.inner_text("#error")
    page.fill("#layers .layer-card:first-child .units", "8")
    page.dispatch_event("#layers .layer-card:first-child .units", "change")
    page.wait_for_selector("#error[hidden]", state="attached", timeout=30_000)  # the server kept serving


def test_keras_download_loads_in_lamina_and_keras_with_equal_predictions(page, tmp_path):
    # Train a little first: Keras itself warns when loading an untrained model's file (its optimizer
    # has no variables yet), whoever wrote it.
    step = int(page.get_attribute("body", "data-step"))
    page.click("#step")
    _wait(lambda: int(page.get_attribute("body", "data-step")) > step, what="one training step")
    with page.expect_download(timeout=30_000) as info:
        page.click("#export-keras")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(str(path))
    assert path.name == "playground.keras"
    x = np.random.default_rng(0).uniform(-1.5, 1.5, (64, 2)).astype("float32")
    ours = np.asarray(lamina.models.load_model(str(path)).predict(x, verbose=0))
    assert ours.shape == (64, 1)
    keras = pytest.importorskip("keras")
    theirs = np.asarray(keras.saving.load_model(str(path)).predict(x, verbose=0))
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)


def test_screenshot_is_not_blank(page, tmp_path):
    image = pytest.importorskip("PIL.Image")
    _train_until(page, lambda: _number(page, "#test-accuracy") > 0.9, "test accuracy > 0.9")
    whole = np.asarray(image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
    assert whole.shape[0] > 500 and whole.shape[1] > 1000
    assert len(np.unique(whole.reshape(-1, 3), axis=0)) > 200  # text, charts, heat-maps: many colours
    board = np.asarray(image.open(io.BytesIO(page.locator("#boundary").screenshot())).convert("RGB")).astype(float)
    orange = np.all(np.abs(board - [245, 147, 34]) < 30, axis=-1).mean()
    blue = np.all(np.abs(board - [8, 119, 189]) < 30, axis=-1).mean()
    assert orange > 0.1 and blue > 0.05  # both classes' regions are drawn
