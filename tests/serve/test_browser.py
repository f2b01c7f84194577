"""The service's page and a run's report in a real browser (headless chromium through Playwright).

The page test uploads an image through the page's file input, as a person
picking a file does, and waits for the bars and the heatmap; the report
test opens a trained run's report.html from disk. Both check that every
image loaded and the console stayed free of errors, and keep a screenshot
in the test's tmp_path. They skip, saying why, without playwright or chromium.
"""

from __future__ import annotations


import pytest

pytest.importorskip("fastapi", reason="the service needs fastapi (pip install 'heron[serve]')")
pytest.importorskip("playwright", reason="the browser tests need playwright (pip install playwright)")

from _browser import broken_images, chromium_path, open_browser, quick_run, run_images, serving  # noqa: E402

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return quick_run(tmp_path_factory.mktemp("browser"), figures="inline")


def test_the_page_shows_the_predictions_and_heatmap_of_an_uploaded_image(run_path, tmp_path):
    from heron.serve.app import create_app
    from heron.serve.limits import ServeSettings
    from heron.tasks.classify import predict_images

    photo = run_images(run_path)[0]
    expected = next(predict_images([photo], run=run_path, engine="torch", precision="fp32")).top
    app = create_app(run_path, ServeSettings(engine="torch", precision="fp32"))
    with serving(app) as url, open_browser() as (page, errors):
        page.goto(url)
        page.wait_for_selector("#run strong", timeout=10_000)  # /health answered
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#bars li.top", timeout=15_000)
        page.wait_for_function("() => { const i = document.querySelector('#heat img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=15_000)
        page.wait_for_function("() => document.querySelector('#photo img')?.complete", timeout=5_000)
        bars = page.inner_text("#bars")
        status = page.inner_text("#status")
        caption = page.inner_text("#heat-caption")
        broken = broken_images(page)
        images = page.eval_on_selector_all("img", "imgs => imgs.length")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        named = [page.get_by_role("button", name=n).count() for n in ("Choose an image", "Take a photo")]
        camera = page.get_by_label("Photo from the camera")
        camera_attrs = (camera.get_attribute("accept"), camera.get_attribute("capture"))
        seen_errors = list(errors)
        (tmp_path / "notes.jpg").write_text("not a picture")  # the server's message reaches the page
        page.set_input_files("#file", str(tmp_path / "notes.jpg"))
        page.wait_for_selector("#error:not([hidden])", timeout=15_000)
        alert = page.get_by_role("alert").inner_text()
    top = expected[0]
    assert page.url == url
    assert f"{100 * top['prob']:.1f}%" in bars and top["label"] in page_lines(bars)[0]
    assert f"Most likely {top['label']}" in status
    assert top["label"] in caption and "CAM" in caption
    assert images == 2 and broken == []
    assert seen_errors == []
    assert named == [1, 1] and camera_attrs == ("image/*", "environment")
    assert "notes.jpg: not an image file" in alert
    assert (tmp_path / "page.png").stat().st_size > 10_000


def page_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_a_runs_report_opens_with_every_figure_and_no_errors(run_path, tmp_path):
    report = run_path / "report.html"
    with open_browser() as (page, errors):
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        sources = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.getAttribute('src'))")
        broken = broken_images(page)
        title = page.title()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert {"history.png", "confusion.png", "top_losses.png"} <= set(sources)
    assert broken == [] and errors == []
    assert title.startswith("heron train")
    assert (tmp_path / "report.png").stat().st_size > 10_000
