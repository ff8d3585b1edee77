"""The one table of export targets: format x precision -> file, converter, runtime backend.

Like Ultralytics' exporter table, every place that needs to know about targets reads this
table: the choices of `edgeface export`, the runtime's backend choice for a bundle, and the
benchmark matrix. Adding a target means adding a row here and a converter/backend with the
names it gives. Numpy-free and torch-free: the on-device runtime imports it.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    format: str  # onnx | openvino | tflite | tensorrt | mnn | ncnn | coreml
    precision: str  # fp32 | fp16 | int8
    suffix: str  # main model file suffix inside the bundle
    converter: str  # function name in edgeface.export.converters
    backend: str  # runtime backend name in edgeface.runtime.backends
    layout: str  # input layout of the exported graph: NHWC (uint8 aligned faces as they come); NCHW for a core graph
    dynamic_batch: bool
    export_modules: tuple[str, ...]  # python modules the converter needs
    runtime_modules: tuple[str, ...]  # python modules the backend needs
    needs_calibration: bool = False
    notes: str = ""
    # How a model that arrives only as an ONNX file reaches this target ("" = it cannot), and
    # the modules that path needs instead of export_modules.
    from_onnx: str = ""
    from_onnx_modules: tuple[str, ...] = ()
    # Graph variants the converter can write, the default first: "full" (uint8 NHWC faces in,
    # normalisation and L2 norm in the graph) or "core" (the bare network: float normalised NCHW
    # faces in, raw embedding out, opset 11; the runtime normalises and L2-normalises from the card).
    graphs: tuple[str, ...] = ("full",)
    # Where the backend can run at all (sys.platform prefixes; () = anywhere its modules import).
    run_platforms: tuple[str, ...] = ()
    # Command-line tools (on PATH or beside the Python running edgeface) the converter needs.
    export_tools: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.format}-{self.precision}"

    def can_export(self, source: str = "torch") -> bool:
        """source: 'torch' (a PyTorch model) or 'onnx' (an ONNX file only)."""
        if source == "onnx":
            return bool(self.from_onnx) and all(_importable(m) for m in self.from_onnx_modules) and all(find_tool(t) for t in self.export_tools)
        return all(_importable(m) for m in self.export_modules) and all(find_tool(t) for t in self.export_tools)

    def can_run(self) -> bool:
        if self.run_platforms and not sys.platform.startswith(self.run_platforms):
            return False
        return all(_importable(m) for m in self.runtime_modules)


_ONNX_EXPORT = ("torch", "onnx", "onnxslim")
_TFLITE_RUN = ("ai_edge_litert|tflite_runtime|tensorflow",)
_ONNX_IN = ("onnx", "onnxslim")
_ONNX2TF = _ONNX_IN + ("onnx2tf", "tensorflow")
_ONNX2TF_NOTE = ("onnx2tf (optional extra 'onnx2tf': tensorflow + onnx2tf) from a float32 NCHW network ONNX, opset 17 from the "
                 "TorchScript exporter best; input float32 NHWC normalised by the runtime, fixed batch 1")

_MNN = ("MNN",)
_NCNN_EXPORT = _ONNX_EXPORT + ("pnnx",)
_COREML_EXPORT = ("torch", "coremltools")
_CORE_NOTE = "core graph: float32 NCHW faces normalised by the runtime from the card, raw embedding out (the runtime L2-normalises), opset 11"

TARGETS: tuple[Target, ...] = (
    Target("onnx", "fp32", ".onnx", "onnx_fp32", "onnxruntime", "NHWC", True, _ONNX_EXPORT, ("onnxruntime",),
           notes="opset 18, uint8 NHWC RGB input; normalisation and L2 norm in the graph; simplified with onnxslim (--graph core: the bare "
                 "network, float32 NCHW, opset 11, for OpenCV dnn, Arm NN and other minimal engines)",
           from_onnx="the ONNX file simplified with onnxslim, its own input and output kept", from_onnx_modules=_ONNX_IN, graphs=("full", "core")),
    Target("onnx", "fp16", ".onnx", "onnx_fp16", "onnxruntime", "NHWC", True, _ONNX_EXPORT, ("onnxruntime",),
           notes="float16 weights and compute (onnxconverter-style conversion in onnxscript/onnx); input stays uint8, output float32"),
    Target("onnx", "int8", ".onnx", "onnx_int8", "onnxruntime", "NHWC", True, _ONNX_EXPORT + ("nncf",), ("onnxruntime",), True,
           notes="QDQ int8 by NNCF post-training quantization on aligned calibration faces",
           from_onnx="NNCF post-training quantization of the ONNX file", from_onnx_modules=_ONNX_IN + ("nncf",)),
    Target("ort", "fp32", ".ort", "ort_fp32", "onnxruntime", "NHWC", True, _ONNX_EXPORT, ("onnxruntime",),
           notes="ONNX Runtime's ORT format (what onnxruntime-mobile, onnxruntime-react-native and reduced-operator builds load) of the onnx-fp32 "
                 "graph, basic optimisations only (portable to ARM)",
           from_onnx="the ONNX file in ORT format", from_onnx_modules=_ONNX_IN),
    Target("ort", "int8", ".ort", "ort_int8", "onnxruntime", "NHWC", True, _ONNX_EXPORT + ("nncf",), ("onnxruntime",), True,
           notes="the onnx-int8 graph (NNCF QDQ) in ORT format",
           from_onnx="NNCF post-training quantization of the ONNX file, in ORT format", from_onnx_modules=_ONNX_IN + ("nncf",)),
    Target("openvino", "fp32", ".xml", "openvino_fp32", "openvino", "NHWC", True, _ONNX_EXPORT + ("openvino",), ("openvino",),
           notes="OpenVINO IR (.xml + .bin) converted from the ONNX graph",
           from_onnx="OpenVINO IR converted from the ONNX file", from_onnx_modules=_ONNX_IN + ("openvino",)),
    Target("openvino", "fp16", ".xml", "openvino_fp16", "openvino", "NHWC", True, _ONNX_EXPORT + ("openvino",), ("openvino",),
           notes="IR with weights compressed to fp16 (compute precision is the device's choice)",
           from_onnx="IR converted from the ONNX file, weights compressed to fp16", from_onnx_modules=_ONNX_IN + ("openvino",)),
    Target("openvino", "int8", ".xml", "openvino_int8", "openvino", "NHWC", True, _ONNX_EXPORT + ("openvino", "nncf"), ("openvino",), True,
           notes="NNCF post-training quantization of the IR on aligned calibration faces (--quantizer pt2e: the PT2E network "
                 "tflite-int8 ships, through OpenVINO's TFLite frontend)",
           from_onnx="NNCF post-training quantization of the IR converted from the ONNX file", from_onnx_modules=_ONNX_IN + ("openvino", "nncf")),
    Target("tflite", "fp32", ".tflite", "tflite_fp32", "litert", "NHWC", False, ("torch", "litert_torch"), _TFLITE_RUN,
           notes="litert-torch conversion, fixed batch 1 (mobile interpreters resize inputs)",
           from_onnx=_ONNX2TF_NOTE, from_onnx_modules=_ONNX2TF),
    Target("tflite", "fp16", ".tflite", "tflite_fp16", "litert", "NHWC", False, ("torch", "litert_torch", "ai_edge_quantizer"), _TFLITE_RUN,
           notes="fp16 weights (ai-edge-quantizer float casting), fp32 compute on CPU, fp16 on GPU delegates",
           from_onnx=_ONNX2TF_NOTE + "; fp16 weights by the TFLite converter", from_onnx_modules=_ONNX2TF),
    Target("tflite", "int8", ".tflite", "tflite_int8", "litert", "NHWC", False, ("torch", "litert_torch", "torchao"), _TFLITE_RUN, True,
           notes="int8 weights and conv/add activations by PT2E (torchao + litert-torch's quantizer) calibrated on aligned faces and their mirror images, each range measured behind the already fake-quantized layers; PReLU, the first conv and the last three layers in float (unless the card's int8_float_scope says otherwise); uint8 input, float32 output",
           from_onnx=_ONNX2TF_NOTE + "; full-integer int8 by the TFLite converter (every op int8: less accurate than the PyTorch path)", from_onnx_modules=_ONNX2TF),
    Target("tensorrt", "fp16", ".engine", "tensorrt_fp16", "tensorrt", "NHWC", True, _ONNX_EXPORT, ("tensorrt",),
           notes="engine built from the ONNX with TensorRT's Python API where TensorRT + an NVIDIA GPU exist; otherwise the TensorRT-ready ONNX and build settings",
           from_onnx="engine built from the ONNX file (as above)", from_onnx_modules=_ONNX_IN),
    Target("tensorrt", "int8", ".engine", "tensorrt_int8", "tensorrt", "NHWC", True, _ONNX_EXPORT, ("tensorrt",), True,
           notes="as fp16, plus an int8 entropy calibrator fed aligned faces (calibration batch written beside the ONNX when no TensorRT)",
           from_onnx="engine built from the ONNX file (as above)", from_onnx_modules=_ONNX_IN),

    Target("mnn", "fp32", ".mnn", "mnn_fp32", "mnn", "NHWC", True, _ONNX_EXPORT + _MNN, _MNN,
           notes="mnnconvert from the edgeface ONNX graph (uint8 NHWC in, unit vectors out); --graph core: from the core graph",
           from_onnx="mnnconvert of the ONNX file", from_onnx_modules=_ONNX_IN + _MNN, graphs=("full", "core"), export_tools=("mnnconvert",)),
    Target("mnn", "fp16", ".mnn", "mnn_fp16", "mnn", "NHWC", True, _ONNX_EXPORT + _MNN, _MNN,
           notes="mnnconvert --fp16: conv weights stored float16, computed in fp32 on CPUs without fp16 arithmetic",
           from_onnx="mnnconvert --fp16 of the ONNX file", from_onnx_modules=_ONNX_IN + _MNN, graphs=("full", "core"), export_tools=("mnnconvert",)),
    Target("mnn", "int8", ".mnn", "mnn_int8", "mnn", "NHWC", True, _ONNX_EXPORT + _MNN, _MNN,
           notes="mnnconvert --weightQuantBits 8: conv/matmul weights int8 (per channel, symmetric), activations float",
           from_onnx="mnnconvert --weightQuantBits 8 of the ONNX file", from_onnx_modules=_ONNX_IN + _MNN, graphs=("full", "core"), export_tools=("mnnconvert",)),
    Target("ncnn", "fp32", ".ncnn.param", "ncnn_fp32", "ncnn", "NCHW", False, _NCNN_EXPORT, ("ncnn",),
           notes=f"pnnx (fp16=0) from the core ONNX; {_CORE_NOTE}; fixed batch 1 (ncnn runs one face per extractor)",
           from_onnx="pnnx of a float32 NCHW network ONNX", from_onnx_modules=_ONNX_IN + ("pnnx",), graphs=("core",), export_tools=("pnnx",)),
    Target("ncnn", "fp16", ".ncnn.param", "ncnn_fp16", "ncnn", "NCHW", False, _NCNN_EXPORT, ("ncnn",),
           notes=f"pnnx (fp16=1: weights stored float16) from the core ONNX, computed in fp32 by edgeface's backend (an app may turn on ncnn's fp16 arithmetic); {_CORE_NOTE}",
           from_onnx="pnnx (fp16=1) of a float32 NCHW network ONNX", from_onnx_modules=_ONNX_IN + ("pnnx",), graphs=("core",), export_tools=("pnnx",)),
    Target("ncnn", "int8", ".ncnn.param", "ncnn_int8", "ncnn", "NCHW", False, _NCNN_EXPORT, ("ncnn",), True,
           notes=f"ncnn2table (calibration table from aligned faces) + ncnn2int8 on the fp32 ncnn model; needs ncnn's command-line tools, "
                 f"which the PyPI packages do not ship; {_CORE_NOTE}",
           graphs=("core",), export_tools=("pnnx", "ncnn2table", "ncnn2int8")),
    Target("coreml", "fp16", ".mlpackage", "coreml_fp16", "coreml", "NCHW", False, _COREML_EXPORT, ("coremltools",),
           notes=f"coremltools ML program (iOS 16+) from a torch.export program of the network, fp16 compute; {_CORE_NOTE}; Core ML predicts only on "
                 "macOS/iOS, so the bundle is 'not-verified' here and carries its conformance set for the device",
           graphs=("core",), run_platforms=("darwin",)),
    Target("coreml", "int8", ".mlpackage", "coreml_int8", "coreml", "NCHW", False, _COREML_EXPORT, ("coremltools",),
           notes="as coreml-fp16, weights linearly quantised to int8 (per channel, symmetric; coremltools.optimize), fp16 compute",
           graphs=("core",), run_platforms=("darwin",)),
)

FORMATS: tuple[str, ...] = tuple(dict.fromkeys(t.format for t in TARGETS))
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(t.precision for t in TARGETS))
BACKENDS: tuple[str, ...] = tuple(dict.fromkeys(t.backend for t in TARGETS))


def _importable(spec: str) -> bool:
    """'a|b' means any one of the alternatives."""
    for name in spec.split("|"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def find_tool(name: str) -> str | None:
    """A command-line tool: beside this Python (a venv's bin/, where pip puts mnnconvert / pnnx
    even when the venv is not activated) or on PATH."""
    import os
    import shutil

    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which(name)


def target(format: str, precision: str) -> Target:
    """The export target FORMAT-PRECISION; raises ValueError listing the targets for a combination the table lacks."""
    for t in TARGETS:
        if t.format == format and t.precision == precision:
            return t
    valid = ", ".join(t.key for t in TARGETS)
    raise ValueError(f"no export target {format}-{precision}; the targets are: {valid}")


def precisions_for(format: str) -> tuple[str, ...]:
    """Precisions the table has for a format; raises ValueError for an unknown format."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    return tuple(t.precision for t in TARGETS if t.format == format)


def backend_for_format(format: str) -> str:
    """The runtime backend that runs a format's files; raises ValueError for an unknown format."""
    for t in TARGETS:
        if t.format == format:
            return t.backend
    raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")


def available_targets(purpose: str = "export") -> list[Target]:
    """Targets whose Python modules are importable here: purpose 'export' or 'run'."""
    if purpose not in ("export", "run"):
        raise ValueError(f"purpose must be 'export' or 'run', got {purpose!r}")
    return [t for t in TARGETS if (t.can_export() if purpose == "export" else t.can_run())]


def format_table(targets: list[Target] | tuple[Target, ...] = TARGETS) -> str:
    """The target table as aligned plain text: file, backend, layout, batch, graphs, and whether each can be exported and run here."""
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    rows = [("target", "file", "backend", "layout", "batch", "graph", "export here", "from ONNX here", "run here")]
    for t in targets:
        rows.append((t.key, t.suffix, t.backend, t.layout, "dynamic" if t.dynamic_batch else "1", "|".join(t.graphs), yes(t.can_export()),
                     yes(t.can_export("onnx")) if t.from_onnx else "-", yes(t.can_run())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
