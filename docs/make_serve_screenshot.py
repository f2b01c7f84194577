"""The README's picture of `heron serve`: the page after one photo was uploaded.

    python docs/make_serve_screenshot.py RUN PHOTO [-o docs/serve_page.png]

Serves RUN on a free loopback port, opens the page in headless chromium
(Playwright driving the system browser), uploads PHOTO through the file
input, waits for the bars and the heatmap, and saves the page.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time


def serve_in_thread(app):
    """uvicorn on 127.0.0.1 at a free port in a daemon thread: (server, url)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("photo")
    parser.add_argument("-o", "--out", default="docs/serve_page.png")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from heron.serve.app import create_app

    server, url = serve_in_thread(create_app(args.run))
    browser_path = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(url)
        page.wait_for_selector("#run strong")
        page.set_input_files("#file", args.photo)
        page.wait_for_function("() => { const i = document.querySelector('#heat img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    server.should_exit = True
    print(args.out)


if __name__ == "__main__":
    main()
