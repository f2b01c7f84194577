"""`heron serve RUN [--host 127.0.0.1] [--port 8000]`: a trained run as a web service and page.

The service (`heron.serve.app`) answers `POST /predict` with the same JSON as
`heron predict --json`, `POST /heatmap` with a PNG, `GET /health`, and `GET /`
with a page to drop, pick or photograph an image. It listens on 127.0.0.1
unless `--host` says otherwise (then it warns: the service has no
authentication). Parsing imports neither torch nor the web framework.
"""

from __future__ import annotations

import argparse
import socket
import sys

from heron.errors import HeronError

_ENGINES = ("auto", "torch", "openvino", "onnxruntime")


def _positive(kind):
    def parse(value: str):
        number = kind(value)
        if not number > 0:
            raise argparse.ArgumentTypeError(f"give a number above 0, not {value}")
        return number

    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from heron.serve.limits import LOOPBACK, MB, ServeSettings

    d = ServeSettings()
    p = sub.add_parser("serve", help="serve a trained run over HTTP: predictions, heatmaps and a web page",
                       description="Serve RUN (a folder from `heron train`, or a model.onnx from `heron export`): "
                       "POST /predict and /heatmap take an image in the multipart field `file`; GET / is a page "
                       "to try it in a browser or on a phone.")
    p.add_argument("run", metavar="RUN", help="a run folder, or a model.onnx (predictions only)")
    p.add_argument("--host", default=LOOPBACK,
                   help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for every network)")
    p.add_argument("--port", type=int, default=d.port, help="port (default %(default)s; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=_positive(float), default=d.max_upload_bytes / MB, metavar="MB",
                   help="largest upload accepted, larger is answered 413 (default %(default)g)")
    p.add_argument("--max-pixels", type=_positive(int), default=d.max_pixels, metavar="N",
                   help="largest image, width x height, before decoding (default %(default)d)")
    p.add_argument("--timeout", type=_positive(float), default=d.timeout_s, metavar="S",
                   help="seconds a request may wait and run before a 504 (default %(default)g)")
    p.add_argument("--max-batch", type=_positive(int), default=d.max_batch, metavar="N",
                   help="uploads waiting together that run as one batch (default %(default)d)")
    p.add_argument("--max-queue", type=_positive(int), default=d.max_queue, metavar="N",
                   help="requests that may wait for the model; one more is answered 503 (default %(default)d)")
    p.add_argument("--topk", type=_positive(int), default=d.topk, help="labels per answer (default %(default)d)")
    p.add_argument("--engine", choices=_ENGINES, default=d.engine,
                   help="what runs the network, as for heron predict (default %(default)s)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                   help="auto: bf16 on CPUs that run it natively, else fp32")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace):
    """The `ServeSettings` the flags describe."""
    from heron.serve.limits import MB, ServeSettings

    try:
        return ServeSettings(host=args.host, port=args.port, max_upload_bytes=int(args.max_upload_mb * MB),
                             max_pixels=args.max_pixels, timeout_s=args.timeout, max_batch=args.max_batch,
                             max_queue=args.max_queue, topk=args.topk, engine=args.engine, precision=args.precision)
    except ValueError as err:
        raise HeronError(f"heron serve: {err}") from None


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or a one-line error naming the flags to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise HeronError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err}); "
                         "pick another --port, or an address of this machine for --host") from None
    return sock


def run(args: argparse.Namespace) -> int:
    """Load the run, then serve until interrupted (Ctrl-C)."""
    from heron.serve.limits import bind_warning

    settings = settings_from(args)
    warning = bind_warning(settings.host)
    if warning:
        print(warning, file=sys.stderr)
    import uvicorn

    from heron.serve.app import create_app

    app = create_app(args.run, settings)
    sock = _listen(settings.host, settings.port)
    served, port = app.state.served, sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"heron: serving {served.name} ({len(served.classes)} classes, {served.engine}) on "
          f"http://{host}:{port}/", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5,
                                           limit_concurrency=settings.max_queue * 2 + 16))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
