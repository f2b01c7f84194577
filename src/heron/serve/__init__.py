"""Putting a trained run to work: ONNX export and the HTTP service with its web page."""
