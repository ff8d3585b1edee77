"""The one ONNX Runtime session setup of the kit.

Every .onnx the kit runs is opened here: YuNet (detect), a bundle's model (runtime backends), a
plain model file measured by `edgeface bench`, the compress stage's fast evaluation. So a plain
.onnx and the same file inside a bundle are benchmarked under the same settings: CPU provider,
`threads` intra-op threads (0: ONNX Runtime's own default, one per physical core), one inter-op
thread with sequential execution (one face batch at a time: nothing to run in parallel), and
warnings only.
"""
from __future__ import annotations

import os


def onnxruntime_session(path: str | os.PathLike | bytes, threads: int = 0):
    """An onnxruntime.InferenceSession for `path` (or a serialized model's bytes) with the kit's options
    (ImportError without onnxruntime)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(path if isinstance(path, bytes) else os.fspath(path), opts, providers=["CPUExecutionProvider"])
