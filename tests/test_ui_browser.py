"""The Gradio demo at /ui of a real `crossemotion serve`, driven in headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from crossemotion.labels import EMOTIONS
from tests import test_serving
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.test_serving import Media, Server, start_server

# the API tests' session fixtures: the same demo media and checkpoints
media = test_serving.media
models_dir = test_serving.models_dir


pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def ui_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(models_dir, tmp_path_factory.mktemp("ui"), ui=True)


def test_demo_page_predicts_an_uploaded_face(ui_server: Server, media: Media,
                                             tmp_path: Path) -> None:  # fmt: skip
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"headless Chromium not found at {CHROMIUM} (make test-deps installs it)")
    image = tmp_path / "frame.jpg"
    image.write_bytes(media.frame)
    hosts: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda req: hosts.add(urlparse(req.url).hostname or req.url))
            page.goto(f"{ui_server.url}/ui/", wait_until="networkidle")
            page.locator("#image-input input[type=file]").set_input_files(str(image))
            # the upload round-trips through the server before the image shows
            page.locator("#image-input img").first.wait_for(timeout=30_000)
            page.locator("#predict-button").click()
            label = page.locator("#fused-label h2, #fused-label .output-class").first
            label.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => { const el = document.querySelector('#summary');"
                " return el && el.innerText.includes('resnet50/ifeed'); }",
                timeout=60_000,
            )
            predicted = label.inner_text().strip()
            summary = page.locator("#summary").inner_text()
            page.locator("#faces img").first.wait_for(timeout=30_000)
            shot = tmp_path / "ui.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert predicted in EMOTIONS, predicted
    assert predicted in summary
    assert shot.stat().st_size > 10_000
    # nothing was fetched from anywhere but this server
    assert hosts == {"127.0.0.1"}, hosts


def test_the_examples_work_offline_and_the_speaker_is_marked(ui_server: Server,
                                                             tmp_path: Path) -> None:  # fmt: skip
    """Click the demo frame example, predict: every face is boxed, the speaker's in green;
    then the demo clip example (with its utterance): the clip models answer."""
    import cv2
    import httpx
    import numpy as np
    from playwright.sync_api import sync_playwright

    from crossemotion.serving.ui import SPEAKER_COLOUR

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"headless Chromium not found at {CHROMIUM} (make test-deps installs it)")
    hosts: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            # blob: and data: URLs are the page's own objects (the video player's), no fetch
            page.on("request", lambda req: urlparse(req.url).scheme in ("blob", "data")
                    or hosts.add(urlparse(req.url).hostname or req.url))  # fmt: skip
            page.goto(f"{ui_server.url}/ui/", wait_until="networkidle")
            examples = page.locator("#examples")

            def predict_example(cell: str, media: str, answer: str, timeout: int) -> str:
                """Click an example, wait for its media, predict, wait for ``answer``."""
                examples.locator(f"[data-testid=dataset-cell-{cell}]").click()
                page.locator(media).first.wait_for(timeout=30_000)
                page.locator("#predict-button").click()
                page.wait_for_function(
                    "(answer) => { const el = document.querySelector('#summary');"
                    " return el && el.innerText.includes(answer); }",
                    arg=answer,
                    timeout=timeout,
                )
                return page.locator("#summary").inner_text()

            # row 1: the 640x360 demo frame
            summary = predict_example("0-0", "#image-input img", "speaker face", 60_000)
            shown = page.locator("#faces img").first
            shown.wait_for(timeout=30_000)
            drawn = httpx.get(shown.get_attribute("src") or "", timeout=30).content
            page.screenshot(path=str(tmp_path / "frame.png"), full_page=True)
            # row 3: the demo clip with its utterance
            clip_summary = predict_example("2-1", "#video-input video", "c3d/meld", 120_000)
            text = page.locator("#text-input textarea").input_value()
        finally:
            browser.close()
    # the frame shows the speaker and a bystander: two faces answered, the first the speaker's
    assert "speaker face" in summary and "face 2" in summary, summary
    image = cv2.imdecode(np.frombuffer(drawn, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert image.shape == (360, 640, 3)
    # the speaker's box: a run of its colour (JPEG or PNG, allow a little drift)
    near = (np.abs(image.astype(int) - np.array(SPEAKER_COLOUR)).sum(-1) < 40).sum()
    assert near > 200, near
    assert "c3d/meld" in clip_summary and "fusion/meld" in clip_summary, clip_summary
    assert text, "the clip example fills in its utterance"
    # the examples came from this server: nothing was fetched from anywhere else
    assert hosts == {"127.0.0.1"}, hosts
