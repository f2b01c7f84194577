"""`heron serve`'s API: the same top-k as `heron predict`, every bad upload a 4xx, one batching worker.

One tiny trained run serves every test (module fixture); each test builds its
own app (a fresh queue and counters) from it. Where a test needs requests to
wait together, it holds the worker inside a batch (`held_worker`) and waits
for the queue to fill: the assertions read the queue's counters, never a clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the service needs fastapi (pip install 'heron[serve]')")
pytest.importorskip("multipart", reason="the service needs python-multipart (pip install 'heron[serve]')")

with warnings.catch_warnings():  # starlette's TestClient asks for httpx2, which is not needed here
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402

from heron.cli import build_parser, main  # noqa: E402
from heron.data.images import decode_image, load_image  # noqa: E402
from heron.errors import ImageError  # noqa: E402
from heron.serve.app import create_app  # noqa: E402
from heron.serve.batcher import InferenceQueue, QueueFull  # noqa: E402
from heron.serve.limits import MB, ServeSettings, bind_warning, is_loopback  # noqa: E402
from heron.tasks.classify import predict_images  # noqa: E402

from _browser import quick_run, run_images  # noqa: E402

@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return quick_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def photos(run_path, tmp_path_factory):
    """Five uploads of different sizes and formats: three of the run's images as JPEGs (one of them
    large enough for draft decoding), one PNG as it is, and a PNG of another shape."""
    folder = tmp_path_factory.mktemp("uploads")
    sources = run_images(run_path)[::6][:4]
    files = []
    for i, source in enumerate(sources[:3]):
        image = Image.open(source).convert("RGB")
        files.append(folder / f"{source.parent.name}-{i}.jpg")
        (image.resize((600, 600)) if i == 0 else image).save(files[-1], quality=90)
    files.append(folder / "plain.png")
    files[-1].write_bytes(sources[3].read_bytes())
    Image.open(sources[0]).convert("RGB").resize((71, 45)).save(folder / "wide.png")
    return files + [folder / "wide.png"]


def _settings(**overrides) -> ServeSettings:
    return ServeSettings(**{"engine": "torch", "precision": "fp32", **overrides})


@contextmanager
def _client(run_path, **overrides):
    app = create_app(run_path, _settings(**overrides))
    with TestClient(app) as client:
        yield app, client


def _post(client, path, photo, field="file", content_type=None, data=None):
    body = photo.read_bytes() if data is None else data
    kind = content_type or ("image/png" if photo.suffix == ".png" else "image/jpeg")
    return client.post(path, files={field: (photo.name, body, kind)})


def _reference(run_path, photos, topk=5):
    """What `heron predict --model RUN --json` prints for each photo."""
    results = predict_images(photos, run=run_path, topk=topk, engine="torch", precision="fp32")
    return {r.path.name: {"file": r.path.name, "predictions": r.top} for r in results}


@contextmanager
def held_worker(app):
    """Hold the worker inside its next batch until the block ends (or `release` is set)."""
    queue = app.state.queue
    original = dict(queue.handlers)
    entered, release = threading.Event(), threading.Event()

    def hold(handler):
        def held(payloads):
            entered.set()
            release.wait(30)
            return handler(payloads)

        return held

    queue.handlers = {kind: hold(handler) for kind, handler in original.items()}
    try:
        yield entered, release
    finally:
        release.set()
        queue.handlers = original


def _wait_until(condition, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def _in_threads(calls):
    """Start each call in its own thread; returns (threads, results list filled as they finish)."""
    results = [None] * len(calls)

    def target(i, call):
        results[i] = call()

    threads = [threading.Thread(target=target, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results


# ---- the answers ------------------------------------------------------------------------------
def test_predict_answers_what_heron_predict_prints(run_path, photos):
    expected = _reference(run_path, photos, topk=3)
    with _client(run_path) as (_, client):
        for photo in photos:
            answer = _post(client, "/predict?topk=3", photo)
            assert answer.status_code == 200
            assert answer.json() == expected[photo.name]
        default = _post(client, "/predict", photos[0]).json()
    assert len(default["predictions"]) == 3  # the run's three shapes; topk 5 is cut to them
    assert sum(p["prob"] for p in default["predictions"]) == pytest.approx(1.0, abs=1e-3)


def test_heatmap_is_the_cam_overlay_of_the_top_class(run_path, photos):
    from heron.data.transforms import eval_transform
    from heron.interpret.cam import class_maps
    from heron.interpret.heatmap import blend, network_view
    from heron.tasks.classify import load_run

    loaded = load_run(run_path)
    image = load_image(photos[4])
    x = eval_transform(loaded.pre)(image)[None].float() / 255.0  # as heron heatmap makes the input
    maps = class_maps(loaded.model, x, "cam")
    reference = np.clip(np.rint(blend(network_view(image, loaded.pre), maps.maps[0], 0.5) * 255), 0, 255)
    top = _reference(run_path, [photos[4]])["wide.png"]["predictions"][0]
    with _client(run_path) as (_, client):
        answer = _post(client, "/heatmap", photos[4])
        other = next(c for c in loaded.classes if c != top["label"])
        asked = client.post(f"/heatmap?class={other}&alpha=0.9",
                            files={"file": ("wide.png", photos[4].read_bytes(), "image/png")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["x-heron-method"] == "cam" and answer.headers["x-heron-class"] == top["label"]
    assert float(answer.headers["x-heron-probability"]) == pytest.approx(top["prob"], abs=1e-3)
    png = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    assert png.shape == reference.shape
    difference = np.abs(png.astype(int) - reference.astype(int))  # a colour-map step at most, here and there
    assert difference.max() <= 3 and difference.mean() < 0.05
    assert asked.status_code == 200 and asked.headers["x-heron-class"] == other
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(asked.content)).convert("RGB")), png)


def test_health_names_the_run_and_its_classes(run_path):
    with _client(run_path) as (_, client):
        health = client.get("/health")
        page = client.get("/")
    assert health.status_code == 200
    body = health.json()
    assert body["run"] == run_path.name and body["classes"] == ["circle", "square", "triangle"]
    assert body["status"] == "ok" and body["heatmap"] is True
    assert page.status_code == 200 and 'capture="environment"' in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]


# ---- what a client can get wrong ----------------------------------------------------------------
def _truncated(photo):
    data = photo.read_bytes()
    return data[: len(data) // 2]


BAD_UPLOADS = {
    # name: (how to send it, status, words the message must hold)
    "not an image": (lambda c, p: _post(c, "/predict", p, data=b"hello, this is text"), 422, "not an image"),
    "truncated": (lambda c, p: _post(c, "/predict", p, data=_truncated(p)), 422, "truncated"),
    "empty": (lambda c, p: _post(c, "/predict", p, data=b""), 422, "empty"),
    "wrong part type": (lambda c, p: _post(c, "/predict", p, content_type="text/plain"), 415, "text/plain"),
    "missing field": (lambda c, p: _post(c, "/predict", p, field="image"), 400, "field `file`"),
    "not multipart": (lambda c, p: c.post("/predict", content=p.read_bytes(), headers={"content-type": "image/jpeg"}),
                      415, "multipart/form-data"),
    "two files": (lambda c, p: c.post("/predict", files=[("file", (p.name, p.read_bytes(), "image/jpeg"))] * 2),
                  400, "multipart"),
    "bad topk": (lambda c, p: c.post("/predict?topk=zero", files={"file": (p.name, p.read_bytes(), "image/jpeg")}),
                 422, "topk"),
    "unknown class": (lambda c, p: c.post("/heatmap?class=purple", files={"file": (p.name, p.read_bytes(),
                                                                                  "image/jpeg")}), 400, "purple"),
    "oversized file": (lambda c, p: _post(c, "/predict", p, data=b"\xff\xd8" + b"\0" * (MB + 100)), 413, "too large"),
    "oversized body": (lambda c, p: _post(c, "/predict", p, data=b"\0" * (2 * MB)), 413, "1 MB"),
}


def test_bad_uploads_get_a_4xx_with_a_message_and_the_next_request_succeeds(run_path, photos):
    photo = photos[0]
    expected = _reference(run_path, [photo])[photo.name]
    with _client(run_path, max_upload_bytes=MB) as (app, client):
        for name, (send, status, words) in BAD_UPLOADS.items():
            answer = send(client, photo)
            assert answer.status_code == status, (name, answer.text)
            assert words in answer.json()["error"], (name, answer.json())
            good = _post(client, "/predict", photo)
            assert good.status_code == 200 and good.json() == expected, name
        assert app.state.queue.running


def test_bad_image_messages_name_the_upload_like_load_image_names_the_file(tmp_path, photos):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"hello, this is text")
    with pytest.raises(ImageError) as from_file:
        load_image(bad)
    with pytest.raises(ImageError) as from_bytes:
        decode_image(bad.read_bytes(), str(bad))
    assert str(from_bytes.value) == str(from_file.value)
    with open(photos[0], "rb") as stream:  # an open file decodes as its bytes do, draft scale included
        assert torch.equal(decode_image(stream, "x", min_size=16), load_image(photos[0], min_size=16))


def test_too_many_pixels_are_refused_from_the_header(run_path, photos):
    with _client(run_path, max_pixels=64 * 64 - 1) as (_, client):
        over = _post(client, "/predict", photos[1])  # 64 x 64
        fits = _post(client, "/predict", photos[4])  # 71 x 45
    assert over.status_code == 422 and "64x64 = 4,096 pixels is over the limit of 4,095" in over.json()["error"]
    assert fits.status_code == 200


_HEAD = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
         b"Content-Type: image/jpeg\r\n\r\n")


def _drive(app, receive) -> tuple[int, dict]:
    """Call the ASGI app with a multipart POST /predict whose body comes from `receive`; (status, JSON)."""
    messages = []

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", b"multipart/form-data; boundary=xyz")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_an_oversized_upload_is_stopped_while_it_streams(run_path):
    """No Content-Length and an endless body: the answer is 413 after about the limit, not after all of it."""
    app = create_app(run_path, _settings(max_upload_bytes=MB))
    chunk, sent = 64 * 1024, 0

    async def receive():  # 8 MB, unless the app stops reading sooner
        nonlocal sent
        sent += chunk
        return {"type": "http.request", "body": _HEAD if sent == chunk else b"\xff" * chunk,
                "more_body": sent < 8 * MB}

    status, answer = _drive(app, receive)
    assert status == 413 and "too large" in answer["error"]
    assert sent <= app.state.settings.max_body_bytes + chunk


def test_an_upload_that_stalls_or_breaks_off_gets_a_4xx(run_path):
    app = create_app(run_path, _settings(timeout_s=0.2))
    calls = 0

    async def stalls():
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": _HEAD, "more_body": True}
        await asyncio.sleep(30)  # a client that stops sending; the timeout ends the wait

    async def breaks_off():
        return {"type": "http.disconnect"}

    assert _drive(app, stalls)[0] == 408
    status, answer = _drive(app, breaks_off)
    assert status == 400 and "ended before" in answer["error"]


# ---- one worker, batches, a bounded queue, a timeout ----------------------------------------------
def test_concurrent_clients_get_their_own_answers_in_shared_batches(run_path, photos):
    expected = _reference(run_path, photos)
    with _client(run_path, max_batch=8) as (app, client):
        queue = app.state.queue
        with held_worker(app) as (entered, release):
            first, first_answer = _in_threads([lambda: _post(client, "/predict", photos[0])])
            _wait_until(entered.is_set, "the worker to take the first request")
            rest, answers = _in_threads([lambda p=p: _post(client, "/predict", p) for p in photos[1:]])
            _wait_until(lambda: queue.pending() == len(photos) - 1, "the other requests to queue")
            release.set()
            for thread in first + rest:
                thread.join(30)
        stats = queue.stats()
    for photo, answer in zip(photos, first_answer + answers):
        assert answer.status_code == 200
        got, want = answer.json(), expected[photo.name]
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        assert [p["prob"] for p in got["predictions"]] == pytest.approx([p["prob"] for p in want["predictions"]],
                                                                          abs=2e-4)
    assert stats["submitted"] == stats["completed"] == len(photos)
    assert stats["batches"] == 2 and stats["batch_sizes"] == {1: 1, len(photos) - 1: 1}


def test_a_full_queue_answers_503_and_then_serves_again(run_path, photos):
    with _client(run_path, max_queue=1) as (app, client):
        queue = app.state.queue
        with held_worker(app) as (entered, release):
            running, running_answer = _in_threads([lambda: _post(client, "/predict", photos[0])])
            _wait_until(entered.is_set, "the worker to take the first request")
            waiting, waiting_answer = _in_threads([lambda: _post(client, "/predict", photos[1])])
            _wait_until(lambda: queue.pending() == 1, "the second request to queue")
            refused = _post(client, "/predict", photos[2])
            release.set()
            for thread in running + waiting:
                thread.join(30)
        after = _post(client, "/predict", photos[3])
        stats = queue.stats()
    assert refused.status_code == 503 and "busy" in refused.json()["error"]
    assert refused.headers["retry-after"] == "1"
    assert running_answer[0].status_code == waiting_answer[0].status_code == after.status_code == 200
    assert stats["rejected"] == 1


def test_a_request_past_the_timeout_answers_504_and_is_dropped_from_the_queue(run_path, photos):
    with _client(run_path, timeout_s=0.2) as (app, client):
        queue = app.state.queue
        with held_worker(app) as (entered, release):
            running, running_answer = _in_threads([lambda: _post(client, "/predict", photos[0])])
            _wait_until(entered.is_set, "the worker to take the first request")
            late = _post(client, "/predict", photos[1])  # waits behind the held batch, past the timeout
            running[0].join(30)
            release.set()
        _wait_until(lambda: queue.stats()["cancelled"] == 1, "the worker to skip the abandoned job")
        after = _post(client, "/predict", photos[2])
    assert late.status_code == 504 and "no answer within 0.2 s" in late.json()["error"]
    assert running_answer[0].status_code == 504
    assert after.status_code == 200


def test_the_queue_fails_only_the_job_whose_result_is_an_error():
    def handler(payloads):
        if "crash" in payloads:
            raise RuntimeError("batch failed")
        return [ValueError(p) if p == "bad" else p.upper() for p in payloads]

    queue = InferenceQueue({"echo": handler}, max_batch=4, max_queue=2)
    held = [queue.submit("echo", "a"), queue.submit("echo", "bad")]
    with pytest.raises(QueueFull):
        queue.submit("echo", "c")
    queue.start()
    try:
        assert held[0].result(10) == "A"
        with pytest.raises(ValueError):
            held[1].result(10)
        with pytest.raises(RuntimeError, match="batch failed"):
            queue.submit("echo", "crash").result(10)
        assert queue.submit("echo", "d").result(10) == "D"  # the worker outlived the failed batch
    finally:
        queue.stop()
    stats = queue.stats()
    assert stats["batch_sizes"][2] == 1 and stats["rejected"] == 1
    assert (stats["completed"], stats["failed"]) == (2, 2)


# ---- where it listens -------------------------------------------------------------------------------
def test_serve_listens_on_loopback_unless_told_and_warns_otherwise(run_path, monkeypatch, capsys):
    import uvicorn

    args = build_parser().parse_args(["serve", str(run_path)])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("example.org")
    assert bind_warning("127.0.0.1") is None

    calls = []

    def listen(server, sockets):  # instead of serving: what it would listen on
        calls.append((server.config, sockets[0].getsockname()))

    monkeypatch.setattr(uvicorn.Server, "run", listen)
    assert main(["serve", str(run_path), "--engine", "torch", "--port", "0"]) == 0
    quiet = capsys.readouterr().err
    assert main(["serve", str(run_path), "--engine", "torch", "--host", "0.0.0.0", "--port", "0"]) == 0
    loud = capsys.readouterr().err
    (config, (host, port)), (_, (public, _)) = calls
    assert host == "127.0.0.1" and port > 0 and public == "0.0.0.0"
    assert "warning" not in quiet and f"http://127.0.0.1:{port}/" in quiet
    assert "warning: listening on 0.0.0.0" in loud
    assert config.limit_concurrency and config.app.state.settings.host == "127.0.0.1"


def test_serve_names_the_flag_to_change_when_the_port_is_taken(run_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(run_path), "--engine", "torch", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("heron: error: --host 127.0.0.1 --port") and "pick another --port" in err[-1]


# ---- an ONNX export --------------------------------------------------------------------------------
def test_an_onnx_export_serves_the_runs_predictions_without_heatmaps(run_path, photos, tmp_path):
    pytest.importorskip("onnxruntime", reason="serving an ONNX export needs onnxruntime")
    export = pytest.importorskip("heron.serve.export", reason="heron export is not available")
    onnx_file = export.export_onnx(run_path, tmp_path / "model.onnx", check=False)
    expected = _reference(run_path, photos)
    with _client(onnx_file) as (_, client):
        answers = [_post(client, "/predict", photo) for photo in photos]
        heatmap = _post(client, "/heatmap", photos[0])
        health = client.get("/health").json()
    for photo, answer in zip(photos, answers):
        got, want = answer.json(), expected[photo.name]
        assert answer.status_code == 200 and got["file"] == photo.name
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        assert [p["prob"] for p in got["predictions"]] == pytest.approx([p["prob"] for p in want["predictions"]],
                                                                          abs=1e-3)
    assert heatmap.status_code == 501 and "run folder" in heatmap.json()["error"]
    assert health["run"] == run_path.name and health["heatmap"] is False
