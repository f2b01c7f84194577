"""One way to open an ONNX Runtime CPU session, for the trunk engine and the exported classifier.

Kept free of torch so that running an exported model needs only numpy and onnxruntime.
"""

from __future__ import annotations


def ort_session(ort, model: str | bytes, threads: int):
    """An ONNX Runtime CPU session at `threads` threads, idle threads not spinning (cores stay free for decoding).

    `ort` is the imported onnxruntime module (the callers import it, each with its own message when it is
    missing); `model` a file path or the serialised graph.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: a failure becomes heron's one-line message
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
