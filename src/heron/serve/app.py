"""`create_app(run, settings)`: a trained run as an HTTP service (FastAPI), with its web page.

Routes:
- `POST /predict` (multipart, field `file`; `?topk=N`): the top-k labels as
  `heron predict --json` prints them, `{"file", "predictions": [{"label",
  "index", "prob"}]}` (`heron.tasks.classify.top_labels`), computed from the
  same pixels (`heron.data.images.decode_image`, the run's evaluation
  transform, JPEG draft decoding as predict does).
- `POST /heatmap` (the same upload; `?class=NAME`, `?alpha=A`): a PNG of the
  class map over the photo (`heron.interpret.overlay`); the headers
  `X-Heron-Class`, `X-Heron-Probability` and `X-Heron-Method` say what it shows.
- `GET /health`: the run's name, classes and the inference queue's counts.
- `GET /`: the page (`page.html`): pick, drop or photograph an image, see the
  bars and the heatmap.

Every request that needs the network goes through one `InferenceQueue`
worker (decoding included), so concurrent clients take turns on the cores
and share batches. What a client can get wrong is answered with a 4xx and
`{"error": "..."}` (limits.py says which), a full queue with 503 and a
request past the timeout with 504; the service keeps serving either way.

RUN is a run folder of `heron train`, or a `model.onnx` of `heron export`
(predictions only: a heatmap needs the network's layers, so that route
answers 501 for an ONNX model).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from heron.data.images import decode_image
from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import HeronError, ModelError
from heron.interpret.cam import probabilities
from heron.interpret.overlay import find_class, overlay_image
from heron.serve.batcher import InferenceQueue, QueueFull
from heron.serve.limits import (RequestRejected, ServeSettings, check_declared_length, check_part_size,
                                check_part_type, check_request_type, limited_receive)
from heron.tasks.classify import top_labels

__all__ = ["create_app", "load_served", "Upload"]

_MAX_NAME = 200  # characters of an upload's file name kept in answers
_MANY_IMAGES = 1 << 30  # a service predicts many images: engine "auto" is the fastest installed, as for predict


@dataclass(frozen=True)
class Upload:
    """One uploaded image: its file name (for messages and answers) and its bytes."""

    name: str
    data: bytes


# ---- the model behind the service -----------------------------------------------------------
class _Served:
    """A classifier the service runs: `probabilities(uint8 (N, 3, h, w)) -> (N, C)`, plus its labels."""

    name: str
    classes: list[str]
    pre: Preprocessing
    multilabel: bool
    engine: str
    heatmaps = False

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def heatmap(self, image: torch.Tensor, class_index: int | None, alpha: float):
        raise NotImplementedError


class _TorchRun(_Served):
    """A run folder: the network rebuilt by `load_run`, run as `predict_files` runs it."""

    heatmaps = True

    def __init__(self, path: Path, settings: ServeSettings) -> None:
        from heron.tasks.classify import load_run, prediction_engine

        loaded = load_run(path)
        if loaded.metadata is not None:
            raise ModelError(f"{path}: this run's head also takes the files' metadata (--metadata); "
                             "serve a run trained on the image alone")
        self.name, self.classes, self.pre = path.resolve().name, loaded.classes, loaded.pre
        self.multilabel = loaded.multilabel
        self.model = loaded.model.eval().to(memory_format=torch.channels_last)
        engine, precision = prediction_engine(_MANY_IMAGES, settings.engine, settings.precision)
        self.engine = f"{engine}, precision {precision}"
        from heron.models._weights import cache_dir
        from heron.transfer.engine import create_engine

        # every engine, torch fp32 included, runs a copy with batch norm folded; the heatmap uses `model`
        self.compiled = create_engine(self.model, engine, precision, "cpu", cache_dir() / "engines",
                                      threads=torch.get_num_threads(), method="forward")

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return probabilities(self.compiled(batch), self.multilabel)  # the engine scales the uint8 batch

    def heatmap(self, image: torch.Tensor, class_index: int | None, alpha: float):
        return overlay_image(self.model, self.pre, image, class_index=class_index, alpha=alpha,
                             multilabel=self.multilabel)


class _OnnxModel(_Served):
    """A `model.onnx` of `heron export`, run by ONNX Runtime (`heron.serve.onnx_model.OnnxClassifier`)."""

    def __init__(self, path: Path, settings: ServeSettings) -> None:
        from heron.serve.onnx_model import OnnxClassifier

        self.classifier = OnnxClassifier(path, threads=torch.get_num_threads())
        run = getattr(self.classifier, "run", "")  # the run folder it was exported from
        self.name = Path(run).name if run else path.stem
        self.classes = list(self.classifier.classes)
        self.pre = Preprocessing.from_dict(self.classifier.preprocessing)
        self.multilabel = bool(self.classifier.multilabel)
        self.engine = "onnxruntime, precision fp32"

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.classifier.predict(batch.numpy())).float()


def load_served(run: str | Path, settings: ServeSettings) -> _Served:
    """The model of `run`: a run folder, or a `.onnx` file."""
    from heron.serve.onnx_model import is_onnx_path

    path = Path(run)
    if is_onnx_path(path):  # as `heron predict --model` decides
        return _OnnxModel(path, settings)
    return _TorchRun(path, settings)


# ---- the worker's handlers ------------------------------------------------------------------
@dataclass(frozen=True)
class _PredictJob:
    upload: Upload
    topk: int


@dataclass(frozen=True)
class _HeatmapJob:
    upload: Upload
    class_index: int | None
    alpha: float


@dataclass(frozen=True)
class _Heatmap:
    png: bytes
    label: str
    prob: float
    method: str


def _predict_handler(served: _Served, settings: ServeSettings):
    """Decode a batch of uploads, run them through the network at once, top-k for each."""
    transform, min_size = eval_transform(served.pre), served.pre.decode_min_size()

    def handle(jobs: Sequence[_PredictJob]) -> list:
        results: list = [None] * len(jobs)
        images, where = [], []
        for i, job in enumerate(jobs):
            try:
                image = decode_image(job.upload.data, job.upload.name, settings.max_pixels, min_size)
            except HeronError as err:
                results[i] = err
                continue
            images.append(transform(image))
            where.append(i)
        if images:
            probs = served.probabilities(torch.stack(images))  # (n, C)
            for i, p in zip(where, probs):
                results[i] = {"file": jobs[i].upload.name,
                              "predictions": top_labels(p, served.classes, jobs[i].topk)}
        return results

    return handle


def _heatmap_handler(served: _Served, settings: ServeSettings):
    """One overlay per upload, one after the other (Grad-CAM needs a backward pass per image)."""

    def handle(jobs: Sequence[_HeatmapJob]) -> list:
        results = []
        for job in jobs:
            try:
                image = decode_image(job.upload.data, job.upload.name, settings.max_pixels)
                shown = served.heatmap(image, job.class_index, job.alpha)
            except HeronError as err:
                results.append(err)
                continue
            results.append(_Heatmap(shown.png(), served.classes[shown.index], float(shown.probs[shown.index]),
                                    shown.method))
        return results

    return handle


# ---- reading a request ----------------------------------------------------------------------
def _upload_name(filename: str | None) -> str:
    """The upload's base name, printable and short; "upload" when it has none."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:_MAX_NAME].strip()
    return name or "upload"


async def _read_upload(request: Request, settings: ServeSettings) -> Upload:
    """The image in the form field `file`, every limit checked (`RequestRejected` otherwise).

    The body is counted while it streams in (`limited_receive`), so an
    oversized upload is refused after at most the limit, not after all of it.
    """
    check_request_type(request.headers.get("content-type"))
    check_declared_length(request.headers, settings)
    limited = Request(request.scope, limited_receive(request.receive, settings.max_body_bytes,
                                                     settings.max_upload_bytes))
    try:
        form = await limited.form(max_files=1, max_fields=16)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise RequestRejected(400, f"malformed multipart body ({detail}); send one image in the field "
                                   "`file`") from None
    except ClientDisconnect:
        raise RequestRejected(400, "the upload ended before its last byte arrived; send it again") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise RequestRejected(400, "no file in the form field `file`; send the image as "
                                       "multipart/form-data field `file` (curl -F file=@photo.jpg)")
        check_part_type(part.content_type, settings)
        data = await part.read()
        check_part_size(len(data), settings)
        return Upload(_upload_name(part.filename), data)
    finally:
        await form.close()


async def _receive(request: Request, queue: InferenceQueue, settings: ServeSettings) -> Upload:
    """The upload, refused before a byte is read when the queue is already full (503), and
    refused when it takes longer than the timeout to arrive (408)."""
    try:
        queue.check_room()
    except QueueFull as exc:
        raise RequestRejected(503, f"the server is busy ({exc}); try again in a moment") from None
    try:
        return await asyncio.wait_for(_read_upload(request, settings), settings.timeout_s)
    except asyncio.TimeoutError:
        raise RequestRejected(408, f"the upload did not arrive within {settings.timeout_s:g} s; "
                                   "send it again") from None


async def _answer(queue: InferenceQueue, settings: ServeSettings, kind: str, job: object):
    """Queue `job`, wait for the worker within the timeout; failures as `RequestRejected`."""
    try:
        future = queue.submit(kind, job)
    except QueueFull as exc:
        raise RequestRejected(503, f"the server is busy ({exc}); try again in a moment") from None
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
    except asyncio.TimeoutError:
        future.cancel()
        raise RequestRejected(504, f"no answer within {settings.timeout_s:g} s (the server is busy); "
                                   "try again in a moment") from None
    except HeronError as err:
        raise RequestRejected(422, str(err)) from None


# ---- the page -------------------------------------------------------------------------------
def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page() -> tuple[str, dict[str, str]]:
    """page.html and its headers: a content security policy that allows its own inline script and
    style (by hash) and requests to this server, nothing else."""
    html = resources.files("heron.serve").joinpath("page.html").read_text(encoding="utf-8")
    scripts = " ".join(_csp_hash(s) for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    styles = " ".join(_csp_hash(s) for s in re.findall(r"<style>(.*?)</style>", html, re.S))
    policy = (f"default-src 'none'; script-src {scripts}; style-src {styles}; img-src 'self' blob: data:; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                  "Referrer-Policy": "no-referrer"}


# ---- the app --------------------------------------------------------------------------------
def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": "..."}` with its status."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        return _error(exc.status, exc.message, {"Retry-After": "1"} if exc.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                             for e in exc.errors())
        return _error(422, problems or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps running")


def create_app(run: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The service of `run` (a run folder, or a `.onnx` export) under `settings`.

    The model is loaded and run once here (a bad run fails now, not on the
    first request); the worker thread starts and stops with the app's
    lifespan. `app.state` holds `served`, `queue` and `settings`.
    """
    settings = settings or ServeSettings()
    served = load_served(run, settings)
    served.probabilities(torch.zeros(1, 3, *served.pre.size, dtype=torch.uint8))  # load and warm up now
    queue = InferenceQueue({"predict": _predict_handler(served, settings),
                            "heatmap": _heatmap_handler(served, settings)},
                           max_batch=settings.max_batch, max_queue=settings.max_queue)
    page, page_headers = _page()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        try:
            yield
        finally:
            queue.stop()

    app = FastAPI(title=f"heron: {served.name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.served, app.state.queue, app.state.settings = served, queue, settings
    _install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "run": served.name, "classes": served.classes, "multilabel": served.multilabel,
                "engine": served.engine, "heatmap": served.heatmaps, "topk": settings.topk,
                "max_upload_bytes": settings.max_upload_bytes, "queue": queue.stats()}

    @app.post("/predict")
    async def predict(request: Request, topk: int | None = Query(None, ge=1, le=1000)) -> dict:
        upload = await _receive(request, queue, settings)
        return await _answer(queue, settings, "predict", _PredictJob(upload, topk or settings.topk))

    @app.post("/heatmap", response_class=Response)
    async def heatmap(request: Request, class_name: str | None = Query(None, alias="class"),
                      alpha: float | None = Query(None, ge=0.0, le=1.0)) -> Response:
        if not served.heatmaps:
            raise RequestRejected(501, "heatmaps need the run folder's network; serve the run folder "
                                       "instead of its ONNX export")
        try:
            index = find_class(class_name, served.classes, "?class=")
        except ModelError as err:
            raise RequestRejected(400, str(err)) from None
        upload = await _receive(request, queue, settings)
        shown = await _answer(queue, settings, "heatmap",
                              _HeatmapJob(upload, index, settings.alpha if alpha is None else alpha))
        headers = {"X-Heron-Class": _header_text(shown.label), "X-Heron-Probability": f"{shown.prob:.4f}",
                   "X-Heron-Method": shown.method, "Cache-Control": "no-store"}
        return Response(shown.png, media_type="image/png", headers=headers)

    return app


def _header_text(text: str) -> str:
    """A class name safe in an HTTP header: ASCII without line breaks, anything else percent-encoded."""
    return quote(text, safe=" -_.()[]+,;:@!*'")
