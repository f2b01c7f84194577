"""Helpers the service's tests share: a quick trained run, the service on a real port, a headless browser.

`quick_run` trains a small classifier (the bundled ImageNet EfficientNet-Lite0
at 128x128, a GAP head on `heron.data.synthetic`'s shapes) in about a second. `serving`
runs uvicorn in a thread on a free loopback port. `open_browser` starts
Debian's chromium through Playwright, or skips the test saying what is missing.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def quick_run(root: Path, figures: str = "none") -> Path:
    """A finished run folder `root/run` (its images in `root/shapes/<shape>/`); `figures="inline"` draws its PNGs."""
    from heron.config import TrainConfig
    from heron.data.synthetic import write_shapes
    from heron.interpret.figures_job import wait_for_figures
    from heron.tasks.classify import train

    write_shapes(root / "shapes", per_class=8, size=64, seed=0)
    config = TrainConfig(data=str(root / "shapes"), out=str(root / "run"), arch="efficientnet_lite0",
                         weights="imagenet", size=[128], crop_pct=1.0, epochs=10, lr=1e-2, quiet=True,
                         cache_dir=str(root / "cache"), workers=0, seed=0, engine="torch", precision="fp32",
                         figures=figures)
    run = train(config)
    wait_for_figures(run.path, 60)
    return run.path


def run_images(run_path: Path) -> list[Path]:
    """The images `quick_run` trained on, sorted."""
    return sorted((run_path.parent / "shapes").rglob("*.png"))


@contextmanager
def serving(app):
    """Serve `app` with uvicorn on 127.0.0.1 at a free port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def chromium_path() -> str | None:
    """Debian's chromium, where installed."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@contextmanager
def open_browser():
    """A headless chromium page and the list its console errors and page errors go into."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser tests need it")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


def broken_images(page) -> list[str]:
    """The src of every <img> on the page that did not load (naturalWidth 0)."""
    return page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                            ".map(i => i.src)")
