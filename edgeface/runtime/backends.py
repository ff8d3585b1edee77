"""Inference backends behind one interface (the idea of NNCF's backend.py): load a model
file with a thread count, run a batch, report name and input layout.

Every exported edgeface model takes uint8 NHWC aligned faces and returns embeddings (see
edgeface.models.graph); a backend only moves arrays in and out. Backends import their
runtime lazily so that a board with only one runtime installed can use it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.targets import BACKENDS as TABLE_BACKENDS, TARGETS as TABLE_TARGETS


class BackendError(RuntimeError):
    """A runtime that is missing or cannot run the model, with what to do about it."""


class InferenceBackend:
    name = "base"
    layout = "NHWC"
    dynamic_batch = True
    input_shape: list | None = None  # the model's input shape as the runtime reports it (a dynamic dimension: -1 or a name)

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
        from ..core.ort_session import onnxruntime_session

        self.model_path = str(model_path)
        try:
            self.session = onnxruntime_session(self.model_path, threads)
        except ImportError:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime") from None
        inp = self.session.get_inputs()[0]
        self.input_shape = list(inp.shape)
        self.input_name = inp.name
        self._dtype = np.dtype(np.uint8) if "uint8" in inp.type else np.dtype(np.float32)
        return self

    @property
    def input_dtype(self):
        return self._dtype

    def run(self, batch):
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        if self.input_shape and self.input_shape[0] == 1 and len(x) > 1:  # a graph made for batch 1: face by face
            return np.concatenate([self.session.run(None, {self.input_name: x[k : k + 1]})[0] for k in range(len(x))])
        return self.session.run(None, {self.input_name: x})[0]


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
        pshape = self.compiled.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else -1 for d in pshape]
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
        self.input_shape = [int(d) for d in self.input["shape"]]
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


def _threads(threads: int) -> int:
    return int(threads) if threads and threads > 0 else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class MNNBackend(InferenceBackend):
    """MNN's Module API (PyPI `MNN`). Feed quirk, measured on the edgeface ONNX graph converted by
    mnnconvert: the uint8 NHWC input comes out described as NCHW with shape (1, H, W, 3) and
    must be fed under that label (as an NHWC-labelled tensor MNN would transpose it). So the
    batch is handed over exactly as the model file describes its input (its dtype and
    dimension-format label), with the batch's own shape (from the card)."""

    name = "mnn"

    def load(self, model_path, threads: int = 0):
        try:
            import MNN
        except ImportError:
            raise BackendError("MNN is not installed: pip install MNN (or 'edgeface[mnn]')") from None
        self.model_path = str(model_path)
        self._expr = MNN.expr
        # "high": no fp16/bf16 down-conversion on CPUs that have it (accuracy first, as for OpenVINO).
        config = {"backend": "CPU", "precision": "high", "numThread": _threads(threads)}
        runtime = MNN.nn.create_runtime_manager((config,))
        # Every module, even the one only read for its tensor names, gets this runtime: a module
        # loaded without one gets MNN's default runtime, whose 4-thread pool then spins on
        # sched_yield for the life of the process (measured: 1 face took 450-700 ms wall for
        # 35 ms of CPU on a loaded 2-core machine, against 13-20 ms with this runtime only).
        names = MNN.nn.load_module_from_file(self.model_path, [], [], runtime_manager=runtime).get_info()
        self.module = MNN.nn.load_module_from_file(self.model_path, names["inputNames"], names["outputNames"], runtime_manager=runtime)
        var = self.module.get_info()["inputs"][0]
        self._format = var.data_format
        self._mnn_dtype = var.dtype
        self._dtype = np.dtype(np.uint8) if var.dtype == MNN.expr.uint8 else np.dtype(np.float32)
        return self

    @property
    def input_dtype(self):
        return self._dtype

    def run(self, batch):
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        y = self.module.forward(self._expr.const(x, list(x.shape), self._format, self._mnn_dtype))
        return np.array(y.read(), dtype=np.float32).reshape(len(x), -1)


def ncnn_blob_names(param_path: str | os.PathLike) -> tuple[str, str]:
    """(input blob, output blob) of an ncnn .param file: the Input layer's top blob and the last
    layer's top blob (pnnx names them in0 / out0)."""
    lines = Path(param_path).read_text().split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise BackendError(f"{param_path}: not an ncnn .param file (magic 7767517 missing)")
    layers = [ln.split() for ln in lines[2:] if ln.strip()]
    inputs = [f[4 + int(f[2])] for f in layers if f[0] == "Input"]
    if not inputs or not layers:
        raise BackendError(f"{param_path}: no Input layer")
    last = layers[-1]
    return inputs[0], last[4 + int(last[2])]


class NcnnBackend(InferenceBackend):
    """ncnn (PyPI `ncnn`) running a pnnx-converted core graph: float32 NCHW normalised faces,
    one face per extractor."""

    name = "ncnn"
    layout = "NCHW"
    dynamic_batch = False

    def load(self, model_path, threads: int = 0):
        try:
            import ncnn
        except ImportError:
            raise BackendError("ncnn is not installed: pip install ncnn (or 'edgeface[ncnn]')") from None
        self._ncnn = ncnn
        self.model_path = str(model_path)
        param = Path(self.model_path)
        weights = param.with_name(param.name.removesuffix(".param") + ".bin")
        if not weights.is_file():
            raise BackendError(f"{param}: its weights {weights.name} are missing beside it")
        self.net = ncnn.Net()
        self.net.opt.num_threads = _threads(threads)
        # Accuracy first: no fp16 storage/arithmetic on CPUs that have it (an fp16 bundle is fp16
        # weights in the file; computing in fp16 is the app's choice, like OpenVINO's hint).
        self.net.opt.use_fp16_packed = self.net.opt.use_fp16_storage = self.net.opt.use_fp16_arithmetic = False
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise BackendError(f"{param}: ncnn could not load the model")
        self.input_name, self.output_name = ncnn_blob_names(param)
        return self

    @property
    def input_dtype(self):
        return np.dtype(np.float32)

    def run(self, batch):
        outs = []
        for face in np.asarray(batch, dtype=np.float32):
            # ncnn.Mat wraps the array's memory without copying: `chw` must outlive the extraction.
            chw = np.ascontiguousarray(face)
            ex = self.net.create_extractor()
            ex.input(self.input_name, self._ncnn.Mat(chw))
            ret, out = ex.extract(self.output_name)
            if ret != 0:
                raise BackendError(f"{self.model_path}: ncnn extract failed with code {ret}")
            outs.append(np.array(out, dtype=np.float32).reshape(-1))
            del ex, chw
        return np.stack(outs) if outs else np.zeros((0, 0), np.float32)


class CoreMLBackend(InferenceBackend):
    """A Core ML .mlpackage through coremltools' predict, which exists only on macOS (iOS apps
    use the same package through the Core ML framework)."""

    name = "coreml"
    layout = "NCHW"
    dynamic_batch = False

    def load(self, model_path, threads: int = 0):
        import sys

        if sys.platform != "darwin":
            raise BackendError(f"{model_path}: Core ML models run only on macOS / iOS (this is {sys.platform}); "
                               "check the bundle on the device with its conformance set")
        try:
            import coremltools as ct
        except ImportError:
            raise BackendError("coremltools is not installed: pip install coremltools (or 'edgeface[coreml]')") from None
        self.model_path = str(model_path)
        self.model = ct.models.MLModel(self.model_path)
        spec = self.model.get_spec()
        self.input_name, self.output_name = spec.description.input[0].name, spec.description.output[0].name
        return self

    @property
    def input_dtype(self):
        return np.dtype(np.float32)

    def run(self, batch):
        outs = [np.asarray(self.model.predict({self.input_name: face[None]})[self.output_name], np.float32).reshape(-1)
                for face in np.asarray(batch, dtype=np.float32)]
        return np.stack(outs) if outs else np.zeros((0, 0), np.float32)


# Every backend class by its `name` (the target table's backend column): a new format's backend
# is one subclass of InferenceBackend here, nothing to register by hand.
BACKENDS: dict[str, type[InferenceBackend]] = {cls.name: cls for cls in InferenceBackend.__subclasses__()}
assert set(BACKENDS) == set(TABLE_BACKENDS), "edgeface.core.targets and the runtime must name the same backends"

def available_backends() -> list[str]:
    """Backends whose runtime imports here (and whose platform this is: Core ML only on macOS)."""
    return list(dict.fromkeys(t.backend for t in TABLE_TARGETS if t.can_run()))


def make_backend(name: str, model_path: str | os.PathLike, threads: int = 0) -> InferenceBackend:
    """Load a model file with the named inference backend (`threads` threads, 0 = the backend's default).
    Raises ValueError for an unknown backend, FileNotFoundError when the file is missing."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if not Path(model_path).exists():  # a file, or a directory package (.mlpackage)
        raise FileNotFoundError(f"{model_path}: model file not found")
    return BACKENDS[name]().load(model_path, threads)
