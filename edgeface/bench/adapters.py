"""Open what `edgeface bench` is asked to measure: a bundle directory (through the runtime's
`load_bundle`, the code apps use) or a plain model file (.onnx, OpenVINO .xml, .tflite) through
its own Python runtime, so models that did not come out of `edgeface export` can be measured too.

Torch-free: this runs on the device. A plain file needs a model card (how to feed it): a
`--card` JSON, `<model>.card.json` beside it, or an `edgeface.json` in its folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..card import ModelCard
from ..preprocess import check_faces, l2_normalize, normalize

# Backend names as in edgeface.targets / edgeface.runtime.backends.
PLAIN_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "litert"}


def resolve_threads(threads: int) -> int:
    from .machine import usable_cores

    return threads if threads and threads > 0 else usable_cores()


def find_card(model_path: Path, card_path: str | os.PathLike | None = None) -> ModelCard:
    candidates = [Path(card_path)] if card_path else [model_path.with_suffix(".card.json"), model_path.parent / "edgeface.json"]
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            data = json.loads(cand.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cand}: not valid JSON ({exc})") from None
        return ModelCard.from_dict(data.get("card", data) if isinstance(data, dict) else data)
    if card_path:
        raise FileNotFoundError(f"model card {card_path} not found")
    raise ValueError(f"{model_path}: a plain model file needs a model card; pass --card CARD.json or put {model_path.with_suffix('.card.json').name} beside it")


class PlainModel:
    """A model file behind the embedder interface: (N,H,W,3) uint8 RGB -> (N,D) unit float32.

    If the graph takes uint8 it gets the raw crops (normalisation is inside, as in edgeface
    bundles); if it takes float it gets them normalised as the card says. The layout (NCHW or
    NHWC) is read from the input shape.
    """

    def __init__(self, path: str | os.PathLike, card: ModelCard, threads: int = 0):
        self.path = Path(path)
        self.card = card
        self.threads = resolve_threads(threads)
        self.backend = PLAIN_SUFFIXES[self.path.suffix]
        self.meta = {"format": self.path.suffix.lstrip("."), "precision": "unknown", "model_file": self.path.name}
        getattr(self, f"_open_{self.backend}")()

    def _layout_from_shape(self, shape) -> str:
        dims = list(shape)
        return "NHWC" if len(dims) == 4 and dims[-1] == 3 and dims[1] != 3 else "NCHW"

    # ---- ONNX Runtime
    def _open_onnxruntime(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        inp = self._sess.get_inputs()[0]
        self._input_name = inp.name
        self._uint8 = inp.type == "tensor(uint8)"
        self.layout = self._layout_from_shape(inp.shape)

    def _run_onnxruntime(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input_name: x})[0]

    # ---- OpenVINO
    def _open_openvino(self) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(self.path))
        inp = model.inputs[0]
        self._uint8 = inp.get_element_type() == ov.Type.u8
        pshape = inp.get_partial_shape()
        self.layout = "NHWC" if pshape.rank.get_length() == 4 and pshape[3].is_static and pshape[3].get_length() == 3 else "NCHW"
        # f32 as the runtime backend does: on CPUs with AMX / AVX512-BF16 the plugin otherwise runs
        # fp32 IR in bf16 (found on a Xeon: 2e-3 off a numpy reference on a tiny model).
        self._compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                                                           "INFERENCE_PRECISION_HINT": "f32"})
        self._request = self._compiled.create_infer_request()

    def _run_openvino(self, x: np.ndarray) -> np.ndarray:
        self._request.infer({0: x})
        return np.array(self._request.get_output_tensor(0).data)

    # ---- TFLite (LiteRT; XNNPACK is its default CPU delegate)
    def _open_litert(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                import tensorflow as tf

                Interpreter = tf.lite.Interpreter
        self._interp = Interpreter(model_path=str(self.path), num_threads=self.threads)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self._uint8 = inp["dtype"] == np.uint8
        self._tfl_in = inp
        self._tfl_out = self._interp.get_output_details()[0]
        self._tfl_batch = int(inp["shape"][0])
        self.layout = self._layout_from_shape(inp["shape"])

    def _run_litert(self, x: np.ndarray) -> np.ndarray:
        inp, out = self._tfl_in, self._tfl_out
        if x.shape[0] != self._tfl_batch:
            self._interp.resize_tensor_input(inp["index"], list(x.shape))
            self._interp.allocate_tensors()
            self._tfl_batch = x.shape[0]
            self._tfl_in = inp = self._interp.get_input_details()[0]
            self._tfl_out = out = self._interp.get_output_details()[0]
        if inp["dtype"] == np.int8 and x.dtype != np.int8:  # fully int8 input: quantise with its own scale
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self._interp.set_tensor(inp["index"], x)
        self._interp.invoke()
        y = self._interp.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = check_faces(faces, self.card)
        if self._uint8:
            x = faces if self.layout == "NHWC" else np.ascontiguousarray(faces.transpose(0, 3, 1, 2))
        else:
            x = normalize(faces, self.card, self.layout)
        y = getattr(self, f"_run_{self.backend}")(x)
        return l2_normalize(np.asarray(y, np.float32).reshape(len(faces), -1))


def open_model(path: str | os.PathLike, backend: str | None = None, threads: int = 0, card: str | None = None):
    """A bundle directory (runtime API) or a plain model file (its runtime directly)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bundle or model file")
    if p.is_dir():
        try:
            from ..runtime import load_bundle
            from ..runtime.bundle import read_meta
        except ImportError as exc:
            raise ValueError(f"{p}: is a bundle directory but edgeface.runtime is not available here ({exc})") from None
        # A not-verified bundle (Core ML, exported where it cannot run) is measured on the device it was made for.
        pending = read_meta(p)["status"] == "not-verified"
        return load_bundle(p, backend=backend, threads=resolve_threads(threads), require_verified=not pending)
    if p.suffix not in PLAIN_SUFFIXES:
        raise ValueError(f"{p}: unsupported model file {p.suffix!r}; expected a bundle directory or one of {sorted(PLAIN_SUFFIXES)}")
    return PlainModel(p, find_card(p, card), threads)


def model_file_of(model) -> Path:
    """The file that holds the weights (what goes on the device), for its size."""
    if isinstance(model, PlainModel):
        return model.path
    meta = getattr(model, "meta", {}) or {}
    base = Path(getattr(model, "path", "."))
    for key in ("model_file", "file", "model"):
        name = meta.get(key)
        if isinstance(name, dict):
            name = name.get("file") or name.get("path")
        if isinstance(name, str) and (base / name).is_file():
            return base / name
    files = [f for f in base.iterdir() if f.suffix in (".onnx", ".xml", ".tflite", ".engine", ".plan")] if base.is_dir() else []
    if not files:
        raise ValueError(f"{base}: cannot find the model file of this bundle")
    return max(files, key=lambda f: f.stat().st_size)


def model_size_bytes(model) -> int:
    """Bytes on disk of what the device needs: every model file a bundle lists (an OpenVINO
    .xml with its .bin), or the plain file."""
    meta = getattr(model, "meta", {}) or {}
    base = Path(getattr(model, "path", "."))
    if isinstance(meta.get("files"), dict) and base.is_dir():
        from ..runtime.bundle import model_files

        return sum((base / name).stat().st_size for name in model_files(meta))  # a bundled detector is not the model
    f = model_file_of(model)
    size = f.stat().st_size
    if f.suffix == ".xml" and f.with_suffix(".bin").is_file():  # OpenVINO IR: weights live in the .bin
        size += f.with_suffix(".bin").stat().st_size
    return size
