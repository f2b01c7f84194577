"""`heron export RUN --format onnx`: a trained run as one ONNX file, checked against PyTorch."""

from __future__ import annotations

import argparse

FORMATS = ("onnx",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `heron export`."""
    p = sub.add_parser("export", help="export a trained run (uint8 pixels in, probabilities out) to ONNX",
                       description="Export a run folder's whole network to ONNX, with its classes and "
                                   "preprocessing in the file's metadata, and check ONNX Runtime's output "
                                   "against PyTorch's on sample inputs.")
    p.add_argument("run", metavar="RUN", help="a run folder from `heron train`")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default %(default)s)")
    p.add_argument("-o", "--out", metavar="FILE", help="where to write it (default RUN/model.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default %(default)s)")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the batch size at 1 (default: any batch size)")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing ONNX Runtime with PyTorch on sample inputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, say the check's result on stderr, print the file's path on stdout."""
    import sys

    from heron.serve.export import export_onnx

    path = export_onnx(args.run, args.out, opset=args.opset, dynamic_batch=not args.static_batch,
                       check=not args.no_check, say=lambda line: print(f"heron: {line}", file=sys.stderr))
    print(path)
    return 0
