"""What the service accepts, and the checks that turn anything else into a 4xx answer.

`ServeSettings` holds every limit (one dataclass; `heron serve` flags map
onto its fields). The checks here are plain functions of headers and
sizes, free of any web framework, so they read and test on their own:

- the request must be `multipart/form-data` (else 415) and its declared
  `Content-Length` within the limit (else 413 before a byte is read);
- `limited_receive` wraps the ASGI `receive` channel and stops the upload
  with `UploadTooLarge` the moment the body passes the limit, so an
  oversized or endless upload costs at most the limit in memory and time,
  whatever length it declared (or did not: chunked uploads have none);
- the file part's own content type must be an image type the decoder reads
  (else 415); what the bytes really are is then the decoder's call.

A check that fails raises `RequestRejected(status, message)`; the app turns
it into `{"error": message}` with that status.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = ["ServeSettings", "RequestRejected", "UploadTooLarge", "LOOPBACK", "IMAGE_CONTENT_TYPES",
           "is_loopback", "bind_warning", "check_request_type", "check_declared_length", "check_part_type",
           "check_part_size", "limited_receive"]

LOOPBACK = "127.0.0.1"
MB = 1024 * 1024
# The content types of the formats heron.data.images decodes (browsers name files by their extension).
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp",
                       "image/tiff", "image/x-portable-pixmap", "image/x-portable-graymap",
                       "image/x-portable-bitmap", "image/x-portable-anymap")
# Room for the multipart framing (boundaries, part headers) around the file itself.
_FRAMING_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """How `heron serve` listens, what it accepts and how it queues work."""

    host: str = LOOPBACK  # another address only when asked for (`--host`), with a warning
    port: int = 8000
    max_upload_bytes: int = 20 * MB  # the uploaded file; larger is 413
    max_pixels: int = 50_000_000  # width * height from the header, before decoding; more is 422
    content_types: tuple[str, ...] = IMAGE_CONTENT_TYPES  # the file part's type; others are 415
    timeout_s: float = 30.0  # queue wait and work together; past it the answer is 504
    max_batch: int = 8  # uploads run through the network together
    max_queue: int = 32  # jobs waiting for the worker (each holds its upload in memory); one more is 503
    topk: int = 5  # labels per answer unless the request asks (?topk=N)
    engine: str = "torch"  # torch | openvino | onnxruntime | auto, as `heron predict --engine`
    precision: str = "auto"  # auto | fp32 | bf16, as `heron predict --precision`
    alpha: float = 0.5  # heatmap colour opacity unless the request asks (?alpha=)

    def __post_init__(self) -> None:
        positive = {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                    "timeout_s": self.timeout_s, "max_batch": self.max_batch, "max_queue": self.max_queue,
                    "topk": self.topk}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def max_body_bytes(self) -> int:
        """The whole request body's limit: the file's plus the multipart framing around it."""
        return self.max_upload_bytes + _FRAMING_BYTES


class RequestRejected(Exception):
    """A request the service will not process: an HTTP status and a one-line reason for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class UploadTooLarge(RequestRejected):
    """The body passed the size limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {_megabytes(limit)}; send a smaller image")


def _megabytes(count: int) -> str:
    return f"{count / MB:g} MB"


# ---- where the service listens
def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: 127.0.0.0/8, ::1 or "localhost"."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_warning(host: str) -> str | None:
    """The warning for listening on an address other machines reach, or None for loopback."""
    if is_loopback(host):
        return None
    return (f"heron: warning: listening on {host}, reachable from other machines; the service has no "
            f"authentication: use --host {LOOPBACK} unless the network is trusted")


# ---- the request
def check_request_type(content_type: str | None) -> None:
    """415 unless the body is multipart/form-data (the browser's and curl -F's form upload)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        shown = kind or "none"
        raise RequestRejected(415, f"content type {shown}: send the image as multipart/form-data in the "
                                  "field `file` (curl -F file=@photo.jpg)")


def check_declared_length(headers: Mapping[str, str], settings: ServeSettings) -> None:
    """413 before reading when Content-Length already says the body is over the limit."""
    declared = headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise RequestRejected(400, f"Content-Length {declared!r} is not a number of bytes") from None
    if length > settings.max_body_bytes:
        raise UploadTooLarge(settings.max_upload_bytes)


def check_part_type(content_type: str | None, settings: ServeSettings) -> None:
    """415 unless the file part says it is an image type the service takes."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in settings.content_types:
        accepted = ", ".join(t for t in settings.content_types if not t.startswith("image/x-"))
        raise RequestRejected(415, f"file of type {kind or 'unknown'}: send an image ({accepted})")


def check_part_size(size: int, settings: ServeSettings) -> None:
    """413 when the file itself is over the limit (the body may be a little larger)."""
    if size > settings.max_upload_bytes:
        raise UploadTooLarge(settings.max_upload_bytes)


Message = dict
Receive = Callable[[], Awaitable[Message]]


def limited_receive(receive: Receive, limit: int, report: int | None = None) -> Receive:
    """`receive` that raises `UploadTooLarge` as soon as more than `limit` body bytes have arrived.

    The count runs over the chunks as they stream in, so the limit holds
    for a body of any declared length, or of none. `report`: the limit
    the message names (default `limit`).
    """
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise UploadTooLarge(limit if report is None else report)
        return message

    return counting
