"""The page in a real browser: headless Chromium (Debian's package) driven by Playwright
opens the page that `cnnlab serve` serves for a trained LeNet-5, draws a stroke with the
mouse, and sees the prediction, the probabilities, the feature maps of every stage, the
C5 and F6 bars and the RBF distances appear; then it uploads a photo of a real MNIST 7
(JPEG) through the file input. It saves a screenshot to its tmp dir and, when
CNNLAB_SCREENSHOT_DIR is set, there too.

Skipped only when Chromium or Playwright is missing outside CI; under CI=true that fails.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import httpx2
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed: without these Chromium waits on refused connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000
# the answer to the whole stroke or upload, not to a part of it
WAIT_FOR_ANSWER = (
    "document.getElementById('result-panel').getAttribute('aria-busy') === 'false'"
    " && document.getElementById('status').textContent.startsWith('answered')"
)


def _sync_playwright():
    reason = ""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install playwright)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def _draw_a_one(page) -> None:
    """A vertical stroke down the middle of the canvas, as mouse events."""
    box = page.locator("#canvas").bounding_box()
    x = box["x"] + 0.52 * box["width"]
    top, bottom = box["y"] + 0.15 * box["height"], box["y"] + 0.85 * box["height"]
    page.mouse.move(x + 0.06 * box["width"], top + 0.05 * box["height"])
    page.mouse.down()
    steps = 24
    for i in range(steps + 1):
        page.mouse.move(x, top + (bottom - top) * i / steps)
    page.mouse.up()


@pytest.mark.slow
def test_drawing_a_digit_shows_the_prediction_and_the_feature_maps(
    served, mnist_test_digits, tmp_path
):
    sync_playwright = _sync_playwright()
    url, _ = served
    photo = tmp_path / "seven.jpg"  # a real MNIST 7, dark ink on light paper, as a JPEG
    Image.fromarray(255 - mnist_test_digits[0][0]).resize((140, 140)).save(photo, quality=90)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 1000},
            bypass_csp=True,  # the page's policy forbids eval, which wait_for_function uses
        )
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/")
            page.wait_for_function(
                "document.getElementById('model-info').textContent.includes('lenet5_1998')"
            )
            _draw_a_one(page)
            page.wait_for_function(WAIT_FOR_ANSWER)
            shown = page.locator("#prediction .class").text_content()
            drawn = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
            maps = page.locator("#stages img.maps")
            page.wait_for_function(
                "[...document.querySelectorAll('#stages img.maps')]"
                ".every((img) => img.complete && img.naturalWidth > 0)"
            )
            maps_count = maps.count()
            bars = page.locator("#stages canvas.vector").count()
            rbf_rows = page.locator("#stages .bars.rbf .bar-row").count()
            probability_rows = page.locator("#probabilities .bar-row").count()
            overlays = page.evaluate(
                "['model-input', 'gradcam', 'saliency']"
                ".map((id) => document.getElementById(id).naturalWidth)"
            )
            screenshot = tmp_path / "serve-page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            page.evaluate("document.getElementById('status').textContent = ''")  # await anew
            page.set_input_files("#upload", str(photo))
            page.wait_for_function(WAIT_FOR_ANSWER)
            uploaded = page.locator("#prediction .class").text_content()
        finally:
            context.close()
    if os.environ.get("CNNLAB_SCREENSHOT_DIR"):
        folder = Path(os.environ["CNNLAB_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, folder / screenshot.name)
    assert shown == "1"
    assert (maps_count, bars, rbf_rows, probability_rows) == (4, 2, 10, 10)  # C1-S4; C5, F6
    assert overlays == [32, 32, 32]
    # the page shows what the API says about the very image drawn
    png = base64.b64decode(drawn.split(",", 1)[1])
    answer = httpx2.post(
        f"{url}/api/predict", content=png, headers={"Content-Type": "image/png"}
    ).json()
    assert answer["class"] == shown
    assert uploaded == "7"
