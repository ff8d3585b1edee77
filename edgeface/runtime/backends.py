"""Inference backends behind one interface (the idea of NNCF's backend.py): load a model
file with a thread count, run a batch, report name and input layout.

Every exported edgeface model takes uint8 NHWC aligned faces and returns embeddings (see
edgeface.export.graph); a backend only moves arrays in and out. Backends import their
runtime lazily so that a board with only one runtime installed can use it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..targets import BACKENDS as TABLE_BACKENDS, _importable


class BackendError(RuntimeError):
    """A runtime that is missing or cannot run the model, with what to do about it."""


class InferenceBackend:
    name = "base"
    layout = "NHWC"
    dynamic_batch = True

    def load(self, model_path: str | os.PathLike, threads: int = 0) -> "InferenceBackend":
        raise NotImplementedError

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'model_path', '?')}>"


class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"

    def load(self, model_path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.model_path = str(model_path)
        self.session = ort.InferenceSession(self.model_path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self._dtype = np.dtype(np.uint8) if "uint8" in inp.type else np.dtype(np.float32)
        return self

    @property
    def input_dtype(self):
        return self._dtype

    def run(self, batch):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=self._dtype)})[0]


class OpenVINOBackend(InferenceBackend):
    name = "openvino"

    def load(self, model_path, threads: int = 0, device: str = "CPU"):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("openvino is not installed: pip install openvino") from None
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        # Accuracy first: the bundle's precision is what was exported; let the CPU plugin not
        # silently down-convert fp32 models to bf16 on CPUs that have it.
        config["INFERENCE_PRECISION_HINT"] = "f32"
        self.model_path = str(model_path)
        self.compiled = core.compile_model(core.read_model(self.model_path), device, config)
        self.request = self.compiled.create_infer_request()
        et = self.compiled.inputs[0].get_element_type()
        self._dtype = np.dtype(np.uint8) if et.get_type_name() == "u8" else np.dtype(np.float32)
        return self

    @property
    def input_dtype(self):
        return self._dtype

    def run(self, batch):
        out = self.request.infer({0: np.ascontiguousarray(batch, dtype=self._dtype)})
        return np.asarray(next(iter(out.values())))


def _tflite_interpreter_class():
    """LiteRT's interpreter, or the older packages that provide the same API."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow.lite"
    except ImportError:
        raise BackendError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime / tensorflow)") from None


class LiteRTBackend(InferenceBackend):
    name = "litert"
    dynamic_batch = False  # the graph is exported at batch 1; batches are run face by face

    def load(self, model_path, threads: int = 0):
        cls, self.package = _tflite_interpreter_class()
        self.model_path = str(model_path)
        self.interpreter = cls(model_path=self.model_path, num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        return self

    @property
    def input_dtype(self):
        return np.dtype(self.input["dtype"])

    def run(self, batch):
        batch = np.asarray(batch)
        outs = []
        for i in range(len(batch)):
            x = batch[i : i + 1].astype(self.input["dtype"], copy=False)
            scale, zero = self.input.get("quantization", (0.0, 0))
            if np.issubdtype(self.input["dtype"], np.integer) and scale and batch.dtype != self.input["dtype"]:
                x = np.round(batch[i : i + 1] / scale + zero).astype(self.input["dtype"])
            self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            oscale, ozero = self.output.get("quantization", (0.0, 0))
            if np.issubdtype(y.dtype, np.integer) and oscale:
                y = (y.astype(np.float32) - ozero) * oscale
            outs.append(np.array(y, dtype=np.float32))
        return np.concatenate(outs) if outs else np.zeros((0, self.output["shape"][-1]), np.float32)


class TensorRTBackend(InferenceBackend):
    """TensorRT engine; device buffers through cuda-python (no torch on the runtime side)."""

    name = "tensorrt"

    def load(self, model_path, threads: int = 0):
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError("TensorRT is not installed here (pip install tensorrt cuda-python, on a machine with an NVIDIA GPU); "
                               "a TensorRT engine only runs where TensorRT and CUDA run") from None
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError:
                raise BackendError("the TensorRT backend needs cuda-python for device buffers: pip install cuda-python") from None
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            raise BackendError("the TensorRT backend needs an NVIDIA GPU with a working CUDA driver; none found")
        self.trt, self.cudart = trt, cudart
        self.model_path = str(model_path)
        logger = trt.Logger(trt.Logger.WARNING)
        with open(self.model_path, "rb") as fh:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise BackendError(f"{model_path}: TensorRT could not deserialise the engine (built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        return self

    @staticmethod
    def _check(result):
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise BackendError(f"CUDA error {err}")
        return result[1] if isinstance(result, tuple) and len(result) > 1 else None

    def run(self, batch):
        cudart = self.cudart
        x = np.ascontiguousarray(batch, dtype=np.uint8)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        y = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), np.float32)
        d_in = self._check(cudart.cudaMalloc(x.nbytes))
        d_out = self._check(cudart.cudaMalloc(y.nbytes))
        try:
            h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(cudart.cudaMemcpy(d_in, x.ctypes.data, x.nbytes, h2d))
            self.context.set_tensor_address(self.input_name, int(d_in))
            self.context.set_tensor_address(self.output_name, int(d_out))
            if not self.context.execute_async_v3(0):
                raise BackendError("TensorRT execution failed")
            self._check(cudart.cudaDeviceSynchronize())
            self._check(cudart.cudaMemcpy(y.ctypes.data, d_out, y.nbytes, d2h))
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return y


BACKENDS: dict[str, type[InferenceBackend]] = {
    "onnxruntime": OnnxRuntimeBackend,
    "openvino": OpenVINOBackend,
    "litert": LiteRTBackend,
    "tensorrt": TensorRTBackend,
}
assert set(BACKENDS) == set(TABLE_BACKENDS), "edgeface.targets and the runtime must name the same backends"

_RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai_edge_litert|tflite_runtime|tensorflow", "tensorrt": "tensorrt"}


def available_backends() -> list[str]:
    return [name for name, mod in _RUNTIME_MODULES.items() if _importable(mod)]


def make_backend(name: str, model_path: str | os.PathLike, threads: int = 0) -> InferenceBackend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"{model_path}: model file not found")
    return BACKENDS[name]().load(model_path, threads)
