"""Converters named by edgeface.core.targets: each turns an ExportSource into model file(s) in a
directory and describes the resulting input/output.

ONNX is the hub: OpenVINO, NNCF int8 and TensorRT all start from the edgeface ONNX graph
(uint8 NHWC in, unit embeddings out). TFLite is converted from the torch graph with
litert-torch (NHWC native); fp16 weights by ai-edge-quantizer, int8 by PT2E (compress.pt2e).
MNN converts either ONNX graph with mnnconvert. The mobile engines that cannot take our uint8
graph (ncnn through pnnx, Core ML through coremltools) get the *core* graph: the bare network,
float32 NCHW, opset 11 (torch_to_core_onnx), with pre- and post-processing left to the runtime.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.card import INPUT_NAME, OUTPUT_NAME, ModelCard
from ..core.targets import TARGETS
from ..compress.quantize import CalibrationSet, FloatScope, QuantizeConfig, quantize

ONNX_OPSET = 18
CORE_OPSET = 11  # the core graph: old enough for pnnx, OpenCV 4.6's dnn and Arm NN's parsers


@dataclass
class ExportSource:
    """What is being exported: a torch embedding net + card, or an ONNX file + card."""

    card: ModelCard
    name: str
    sha256: str
    kind: str  # "torch" | "onnx"
    path: str = ""
    net: object = None  # torch nn.Module (normalised NCHW float -> (N, D)) when kind == "torch"
    onnx_path: Path | None = None  # when kind == "onnx"
    mean: tuple | None = None  # override of the in-graph mean/std (only used to prove verification catches it)
    std: tuple | None = None
    # Conversions reused across targets of one source in one process (the ONNX graph feeds
    # ONNX, OpenVINO, NNCF and TensorRT; the fp32 TFLite feeds fp16/int8): name -> file.
    cache: dict = field(default_factory=dict, repr=False)

    def cached(self, key: str, dest: Path, make: Callable[[Path], Path]) -> Path:
        hit = self.cache.get(key)
        if hit is None or not Path(hit).is_file():
            tmpdir = Path(tempfile.mkdtemp(prefix="edgeface-export-"))
            hit = make(tmpdir / dest.name)
            self.cache[key] = hit
        shutil.copyfile(hit, dest)
        return dest

    def graph(self):
        from ..models.graph import FaceEmbeddingGraph

        if self.kind != "torch":
            raise ValueError(f"{self.path}: this target converts from a PyTorch model; an ONNX file cannot be converted to it here")
        return FaceEmbeddingGraph(self.net, self.card, self.mean, self.std).eval()


@dataclass
class Converted:
    model_file: str  # bundle-relative name of the file a runtime opens
    files: list[str]  # every file to hash (model_file first)
    input: dict
    output: dict
    info: dict = field(default_factory=dict)
    built: bool = True  # False: the model file cannot run here (TensorRT-ready ONNX without an engine; a Core ML package)
    verify_file: str | None = None  # file to verify through when the model file cannot run here
    verify_backend: str | None = None
    unbuilt_status: str = "not-built"  # the bundle's status when built is False
    unbuilt_reason: str = ""
    converter: str | None = None  # the function that made it, where not the target row's (onnx_int8_qat)


def _log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def _io(card: ModelCard, batch, dtype: str = "uint8", in_graph: bool = True, layout: str = "NHWC", out_dtype: str = "float32") -> tuple[dict, dict]:
    h, w = card.input_size
    shape = [batch, h, w, 3] if layout == "NHWC" else [batch, 3, h, w]
    inp = {
        "name": INPUT_NAME,
        "shape": shape,
        "dtype": dtype,
        "layout": layout,
        "color_order": "RGB" if in_graph else card.color_order,
        "value_range": [0, 255] if in_graph else [-1e9, 1e9],
        "normalization_in_graph": in_graph,
    }
    if in_graph:
        inp["note"] = (f"feed the aligned crop as it is: uint8 RGB, 0-255, {layout}. The graph converts to the model's colour order "
                       f"({card.color_order}) and applies (x - mean) / std itself (mean {list(card.mean)}, std {list(card.std)}).")
    else:
        inp["mean"], inp["std"] = list(card.mean), list(card.std)
        inp["note"] = f"normalise before feeding: {card.color_order}, (x - mean) / std, float32 {layout}"
    out = {"name": OUTPUT_NAME, "shape": [batch, card.embedding_size], "dtype": out_dtype, "l2_normalized_in_graph": in_graph}
    return inp, out


# --------------------------------------------------------------------------- ONNX


def _slim_with_card(raw: Path, path: Path, card: ModelCard, keep_slimmed=None) -> Path:
    """The last step of every torch -> ONNX export: onnxslim, the card in the model's metadata
    (lets `edgeface export model.onnx` find its card), the ONNX checker, save; the raw file goes.
    `keep_slimmed(model) -> bool`, if given, decides whether the slimmed graph replaces the raw one."""
    import onnx
    import onnxslim

    model = onnxslim.slim(onnx.load(str(raw)))
    if keep_slimmed is not None and not keep_slimmed(model):
        _log("onnxslim changed the core graph's outputs: keeping the unslimmed export")
        model = onnx.load(str(raw))
    onnx.helper.set_model_props(model, {"edgeface_card": card.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    raw.unlink(missing_ok=True)
    return path


def torch_to_onnx(graph, card: ModelCard, path: Path, half: bool = False) -> Path:
    """The full graph: torch.onnx (dynamo) export with a dynamic batch, then _slim_with_card."""
    import torch

    from ..models.graph import sample_faces

    module = graph
    if half:
        module = _HalfGraph(graph)
    batch = torch.export.Dim("batch", min=1, max=4096)
    raw = path.with_suffix(".raw.onnx")
    torch.onnx.export(module, (sample_faces(card, 2),), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      opset_version=ONNX_OPSET, dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    return _slim_with_card(raw, path, card)


class _HalfGraph:  # created lazily so importing this module does not need torch
    def __new__(cls, graph):
        import copy

        import torch

        class HalfGraph(torch.nn.Module):
            """fp16 weights and compute; uint8 in, float32 unit vectors out (the L2 norm in fp32)."""

            def __init__(self, g):
                super().__init__()
                self.g = copy.deepcopy(g).half()

            def forward(self, faces):
                g = self.g
                x = faces.to(torch.float16)
                if g.identity_colour:
                    x = x * g.channel_scale + g.colour_offset
                else:
                    x = torch.matmul(x, g.colour_scale) + g.colour_offset
                e = g.net(x.permute(0, 3, 1, 2)).flatten(1).float()
                return e / torch.clamp(torch.sqrt(torch.sum(e * e, dim=1, keepdim=True)), min=1e-10)

        return HalfGraph(graph).eval()


def onnx_io(path: Path, card: ModelCard) -> tuple[dict, dict]:
    """Describe an ONNX model's input: our uint8 NHWC graph, or a bare float NCHW net."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inp = m.graph.input[0]
    elem = inp.type.tensor_type.elem_type
    dims = [d.dim_value if d.dim_value > 0 else None for d in inp.type.tensor_type.shape.dim]
    if elem == onnx.TensorProto.UINT8:
        layout = "NHWC" if len(dims) == 4 and dims[3] == 3 else "NCHW"
        i, o = _io(card, dims[0], "uint8", True, layout)
    elif elem == onnx.TensorProto.FLOAT:
        layout = "NCHW" if len(dims) == 4 and dims[1] == 3 else "NHWC"
        i, o = _io(card, dims[0], "float32", False, layout)
    else:
        raise ValueError(f"{path}: input {inp.name!r} has ONNX element type {elem}; expected uint8 faces or float32 normalised faces")
    i["name"] = inp.name
    o["name"] = m.graph.output[0].name
    return i, o


def onnx_opset(model_or_path) -> int | None:
    """The default-domain opset an ONNX model (ModelProto or file) imports: what its metadata reports."""
    import onnx

    m = model_or_path if hasattr(model_or_path, "opset_import") else onnx.load(str(model_or_path), load_external_data=False)
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def wrap_bare_onnx(model, card: ModelCard):
    """A bare float network (normalised NCHW or NHWC faces in, raw embedding out; an onnx
    ModelProto) inside the kit's graph contract: uint8 RGB NHWC faces in (cast, colour order,
    (x - mean) / std and the layout transpose from the card), unit float32 embeddings out
    (flatten, L2 norm), tensors named faces / embedding. The network's own opset is kept (the
    added ops exist in every opset the kit reads; ReduceSum's axes follow the opset's form)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or not g.output:
        raise ValueError(f"a face embedder ONNX has one input and an output; this one has inputs {[i.name for i in inputs]}")
    inp, out = inputs[0], g.output[0]
    dims = inp.type.tensor_type.shape.dim
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 4:
        raise ValueError(f"input {inp.name!r}: expected a float32 4-d face batch to wrap")
    layout = "NCHW" if dims[1].dim_value == 3 else "NHWC"
    opset = onnx_opset(model) or 13
    net_in, net_out = "edgeface_net_input", "edgeface_net_output"
    for node in g.node:  # the network's own names move aside: the contract's names are faces / embedding
        node.input[:] = [net_in if n == inp.name else net_out if n == out.name else n for n in node.input]
        node.output[:] = [net_out if n == out.name else n for n in node.output]
    h, w = card.input_size
    mix = np.eye(3, dtype=np.float32) if card.color_order == "RGB" else np.eye(3, dtype=np.float32)[:, ::-1] if card.color_order == "BGR" \
        else np.repeat(np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=1)
    std, mean = np.asarray(card.std, np.float32), np.asarray(card.mean, np.float32)
    scale, offset = mix / std.reshape(1, 3), (-mean / std).reshape(1, 1, 1, 3)
    new_inits = [numpy_helper.from_array(offset.astype(np.float32), "edgeface_offset"), numpy_helper.from_array(np.array([1], np.int64), "edgeface_axis1"),
                 numpy_helper.from_array(np.array(1e-10, np.float32), "edgeface_eps")]
    pre = [helper.make_node("Cast", [INPUT_NAME], ["edgeface_f"], to=TensorProto.FLOAT, name="edgeface_cast")]
    if card.color_order == "RGB":
        new_inits.append(numpy_helper.from_array(np.diagonal(scale).reshape(1, 1, 1, 3).astype(np.float32), "edgeface_scale"))
        pre.append(helper.make_node("Mul", ["edgeface_f", "edgeface_scale"], ["edgeface_scaled"], name="edgeface_scale"))
    else:
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(scale, np.float32), "edgeface_scale"))
        pre.append(helper.make_node("MatMul", ["edgeface_f", "edgeface_scale"], ["edgeface_scaled"], name="edgeface_colour"))
    if layout == "NCHW":
        pre += [helper.make_node("Add", ["edgeface_scaled", "edgeface_offset"], ["edgeface_nhwc"], name="edgeface_offset"),
                helper.make_node("Transpose", ["edgeface_nhwc"], [net_in], perm=[0, 3, 1, 2], name="edgeface_to_nchw")]
    else:
        pre.append(helper.make_node("Add", ["edgeface_scaled", "edgeface_offset"], [net_in], name="edgeface_offset"))
    reduce = (helper.make_node("ReduceSum", ["edgeface_sq", "edgeface_axis1"], ["edgeface_ss"], keepdims=1, name="edgeface_sum") if opset >= 13
              else helper.make_node("ReduceSum", ["edgeface_sq"], ["edgeface_ss"], axes=[1], keepdims=1, name="edgeface_sum"))
    post = [helper.make_node("Flatten", [net_out], ["edgeface_e"], axis=1, name="edgeface_flatten"),
            helper.make_node("Mul", ["edgeface_e", "edgeface_e"], ["edgeface_sq"], name="edgeface_square"), reduce,
            helper.make_node("Sqrt", ["edgeface_ss"], ["edgeface_norm"], name="edgeface_sqrt"),
            helper.make_node("Max", ["edgeface_norm", "edgeface_eps"], ["edgeface_safe"], name="edgeface_clamp"),
            helper.make_node("Div", ["edgeface_e", "edgeface_safe"], [OUTPUT_NAME], name="edgeface_l2")]
    batch = dims[0].dim_value if dims[0].dim_value > 0 else (dims[0].dim_param or "batch")
    new_in = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [batch, h, w, 3])
    new_out = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, card.embedding_size])
    nodes = pre + list(g.node) + post
    graph = helper.make_graph(nodes, g.name or card.name, [new_in], [new_out], list(g.initializer) + new_inits,
                              value_info=[v for v in g.value_info if v.name not in (inp.name, out.name)])
    wrapped = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="edgeface (wrapped a bare network)")
    wrapped.ir_version = model.ir_version
    onnx.checker.check_model(wrapped)
    return wrapped


def _onnx_from_source(src: ExportSource, path: Path) -> Path:
    """The full graph (uint8 NHWC in, unit vectors out) of a source: exported from its torch net, or an
    ONNX file: an edgeface graph as it is, a bare float network wrapped (wrap_bare_onnx)."""
    if src.kind == "onnx":
        import onnx
        import onnxslim

        model = onnxslim.slim(onnx.load(str(src.onnx_path)))
        i, _ = onnx_io(src.onnx_path, src.card)
        if not i["normalization_in_graph"]:
            model = wrap_bare_onnx(model, src.card)
        onnx.helper.set_model_props(model, {"edgeface_card": src.card.to_json()})
        onnx.save(model, str(path))
        return path
    return src.cached("onnx", path, lambda p: torch_to_onnx(src.graph(), src.card, p))


def _source_note(src: ExportSource) -> dict:
    """What the export's details say about an ONNX file's graph (a bare network is wrapped)."""
    if src.kind != "onnx":
        return {}
    i, _ = onnx_io(src.onnx_path, src.card)
    if i["normalization_in_graph"]:
        return {"source_graph": "an edgeface graph (uint8 NHWC in), used as it is"}
    return {"source_graph": (f"a bare {i['dtype']} {i['layout']} network (opset {onnx_opset(src.onnx_path)}): edgeface added the uint8 NHWC input, "
                             "colour order, (x - mean) / std from the card, the layout transpose and the L2 norm around it")}


def torch_to_core_onnx(net, card: ModelCard, path: Path) -> Path:
    """The core graph: the bare network (normalised float32 NCHW faces in, raw embedding out,
    dynamic batch), TorchScript exporter at opset CORE_OPSET, simplified with onnxslim, the
    card in its metadata. Pre- and post-processing are the runtime's (Bundle.raw_output
    normalises from the card, Bundle.embed L2-normalises)."""
    from ..compress.evalfast import export_onnx

    # A torch.export program (models.foreign, .pt2) traced to TorchScript keeps the batch it was
    # traced at in its reshapes: its core graph says batch 1 (runtimes then feed it face by face).
    fixed = hasattr(net, "program") and hasattr(net, "input_shape")
    raw = export_onnx(net, card, path.with_suffix(".raw.onnx"), opset=CORE_OPSET, dynamic_batch=not fixed)
    # onnxslim changed dlib_resnet's core graph (cosine 0.45-0.52 to the torch net, measured; the raw
    # TorchScript export matches to 1e-7): the slimmed graph is kept only if it computes the same.
    return _slim_with_card(raw, path, card, keep_slimmed=lambda model: _same_function(raw, model, card))


def _same_function(raw_path: Path, model, card: ModelCard, min_cosine: float = 0.99999) -> bool:
    """Whether `model` (an onnx ModelProto) gives the raw ONNX file's outputs on fixed random
    normalised-range NCHW inputs (batch 2), through ONNX Runtime."""
    from ..core.ort_session import onnxruntime_session

    x = np.random.default_rng(0).normal(0.0, 0.5, (2, 3, *card.input_size)).astype(np.float32)
    outs = []
    for m in (raw_path, model.SerializeToString()):
        sess = onnxruntime_session(m)
        name = sess.get_inputs()[0].name
        outs.append(np.concatenate([np.asarray(sess.run(None, {name: x[k : k + 1]})[0], np.float64).reshape(1, -1) for k in range(len(x))]))
    a, b = outs
    if a.shape != b.shape:
        return False
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return bool(cos.min() >= min_cosine)


def core_onnx(src: ExportSource, path: Path) -> Path:
    """The core graph of a source: exported from its torch net, or an ONNX file that already is
    one (float32 NCHW in; an edgeface uint8 graph is refused: its pre-processing cannot be cut
    out reliably)."""
    if src.kind == "onnx":
        i, _ = onnx_io(src.onnx_path, src.card)
        if i["normalization_in_graph"] or i["layout"] != "NCHW":
            raise ValueError(f"{src.onnx_path}: the core graph is a float32 NCHW network; this ONNX takes {i['dtype']} {i['layout']}"
                             f"{' with pre-processing inside (an edgeface export)' if i['normalization_in_graph'] else ''}; "
                             "export from the PyTorch model, or pass the network's own ONNX")
        import onnx
        import onnxslim

        model = onnxslim.slim(onnx.load(str(src.onnx_path)))  # the bare network as it is (not wrapped: that is the full graph)
        onnx.helper.set_model_props(model, {"edgeface_card": src.card.to_json()})
        onnx.save(model, str(path))
        return path
    return src.cached("core-onnx", path, lambda p: torch_to_core_onnx(src.net, src.card, p))


def _graph_onnx(src: ExportSource, path: Path, graph: str) -> Path:
    if graph not in ("full", "core"):
        raise ValueError(f"unknown graph variant {graph!r}; choose full or core")
    return core_onnx(src, path) if graph == "core" else _onnx_from_source(src, path)


def onnx_fp32(src: ExportSource, out: Path, calib: np.ndarray | None, graph: str = "full") -> Converted:
    """ONNX fp32: the full graph (uint8 NHWC in, normalisation and L2 norm inside, opset ONNX_OPSET) or, with
    graph="core", the bare network (float32 NCHW, opset CORE_OPSET); both onnxslim-simplified with a dynamic batch."""
    if graph == "core":
        path = core_onnx(src, out / "model.onnx")
        i, o = onnx_io(path, src.card)
        return Converted("model.onnx", ["model.onnx"], i, o, {"opset": onnx_opset(path), "graph": "core", "simplifier": "onnxslim",
                                                              "dynamic_batch": i["shape"][0] is None, **_source_note(src)})
    path = _onnx_from_source(src, out / "model.onnx")
    i, o = onnx_io(path, src.card)
    return Converted("model.onnx", ["model.onnx"], i, o, {"opset": onnx_opset(path), "simplifier": "onnxslim", "dynamic_batch": i["shape"][0] is None,
                                                          **_source_note(src)})


def onnx_fp16(src: ExportSource, out: Path, calib: np.ndarray | None) -> Converted:
    """ONNX fp16, exported from the PyTorch model in half precision (L2 norm in float32); raises ValueError for an ONNX source."""
    if src.kind != "torch":
        raise ValueError("onnx fp16 is exported from a PyTorch model; for an ONNX file use --target openvino --precision fp16")
    path = torch_to_onnx(src.graph(), src.card, out / "model.onnx", half=True)
    i, o = onnx_io(path, src.card)
    return Converted("model.onnx", ["model.onnx"], i, o, {"opset": onnx_opset(path), "simplifier": "onnxslim", "compute": "float16 (weights and activations; L2 norm in float32)"})


def onnx_at_precision(model, card: ModelCard, precision: str, out_dir, calib: np.ndarray | None = None, float_scope: FloatScope = FloatScope(),
                      compact: bool = True) -> Path:
    """A torch face embedder as out_dir/model.onnx at `precision` (the graph `edgeface export
    --target onnx` writes: uint8 NHWC in, unit vectors out; int8 = NNCF QDQ with `float_scope`
    in float); returns its path. What `edgeface quantize` measures."""
    precisions = ("fp32", "fp16", "int8")
    if precision not in precisions:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(precisions)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = ExportSource(card=card, name=card.name, sha256="", kind="torch", net=model.eval())
    if precision == "int8":
        if calib is None or len(calib) == 0:
            raise ValueError("int8 quantization needs calibration faces (--calib DIR with face images)")
        conv = onnx_int8(src, out_dir, calib, float_scope=float_scope, compact=compact)
    elif precision == "fp16":
        conv = onnx_fp16(src, out_dir, calib)
    else:
        conv = onnx_fp32(src, out_dir, calib)
    return out_dir / conv.model_file


def onnx_int8(src: ExportSource, out: Path, calib: np.ndarray | None, float_scope: FloatScope | None = None, compact: bool = True) -> Converted:
    """NNCF post-training int8 (QDQ) on the ONNX graph; `kept_in_float` layers compute in float.
    compact: store what stays float smaller (onnx_compact: the float head's weights int8
    weight-only, other float params fp16, short names): 1.41 -> 1.11 MB on the reference."""
    import nncf
    import onnx

    if calib is None or len(calib) == 0:
        raise ValueError("int8 needs calibration faces")
    fp32 = _onnx_from_source(src, out / "model.fp32.onnx")
    model = onnx.load(str(fp32))
    i, o = onnx_io(fp32, src.card)
    name = i["name"]
    if i["normalization_in_graph"]:
        feed = lambda x: {name: x}  # noqa: E731
    else:
        from ..core.preprocess import normalize

        feed = lambda x: {name: normalize(x, src.card, i["layout"])}  # noqa: E731
    _log(f"NNCF int8 on ONNX with {len(calib)} calibration faces")
    float_scope = float_scope or FloatScope.for_card(src.card, FloatScope())
    qmodel, kept, settings = quantize(model, CalibrationSet(calib, feed), float_scope, QuantizeConfig("nncf"))
    _log(f"NNCF model type {settings['model_type']}; kept in float: {kept or 'nothing'}")
    storage = {}
    if compact:
        from ..compress.onnx_compact import compact_int8

        storage = compact_int8(qmodel)
        _log(f"compacted: weight-only int8 {storage['weight_only_int8'] or 'none'}, {storage['float_params_stored_fp16']} float params stored fp16")
    del qmodel.metadata_props[:]
    onnx.helper.set_model_props(qmodel, {"edgeface_card": src.card.to_json()})
    onnx.save(qmodel, str(out / "model.onnx"))
    fp32.unlink()
    return Converted("model.onnx", ["model.onnx"], i, o, {"opset": onnx_opset(qmodel), **_source_note(src), "quantizer": f"nncf {nncf.__version__} (QDQ, per-channel weights)",
                                                          "calibration_faces": int(len(calib)), "kept_in_float": kept, "quantization_settings": settings,
                                                          "storage": storage})


def _check_qat_inputs(src: ExportSource, calib: np.ndarray | None, train_faces: np.ndarray | None) -> None:
    """What every quantization-aware training route needs: the PyTorch network, calibration and training faces."""
    if src.kind != "torch":
        raise ValueError(f"{src.path}: quantization-aware training needs the PyTorch model, not an ONNX file")
    if calib is None or len(calib) == 0 or train_faces is None or len(train_faces) == 0:
        raise ValueError("quantization-aware training needs calibration and training faces")


def _nncf_qat_onnx(src: ExportSource, path: Path, calib: np.ndarray, train_faces: np.ndarray, steps: int, lr: float,
                   float_scope: FloatScope | None, compact: bool) -> dict:
    """NNCF quantization-aware training of src's network (compress.quantize with method qat: NNCF
    PTQ on `calib`, then `steps` steps retraining the fake-quantized network to the float
    network's own embeddings of `train_faces`), written to `path` as a Q/DQ ONNX graph with int8
    weights. Returns the export details."""
    import nncf

    from ..compress.qat import export_qat_onnx

    _check_qat_inputs(src, calib, train_faces)
    float_scope = float_scope or FloatScope.for_card(src.card, FloatScope.ends())
    _log(f"QAT int8: NNCF PTQ on {len(calib)} calibration faces, then {steps} steps on {len(train_faces)} training faces")
    qnet, info = quantize(src.net, CalibrationSet(calib), float_scope,
                          QuantizeConfig("qat", {"card": src.card, "train_faces": train_faces, "steps": steps, "lr": lr}))
    storage = export_qat_onnx(qnet, src.card, path, compact=compact)
    return {"quantizer": f"nncf {nncf.__version__} QAT (PTQ + {steps} fake-quantized training steps, per-channel int8 weights)",
            "calibration_faces": int(len(calib)), "qat": info, "storage": storage}


def onnx_int8_qat(src: ExportSource, out: Path, calib: np.ndarray, train_faces: np.ndarray, steps: int, lr: float = 1e-5,
                  float_scope: FloatScope | None = None) -> Converted:
    """onnx-int8 by NNCF quantization-aware training (_nncf_qat_onnx), exported with int8
    weights: the same graph contract as onnx_int8, for models where post-training int8 loses too much."""
    info = _nncf_qat_onnx(src, out / "model.onnx", calib, train_faces, steps, lr, float_scope, compact=True)
    i, o = onnx_io(out / "model.onnx", src.card)
    return Converted("model.onnx", ["model.onnx"], i, o, converter="onnx_int8_qat", info={"opset": 17, **info})


def openvino_int8_qat(src: ExportSource, out: Path, calib: np.ndarray, train_faces: np.ndarray, steps: int, lr: float = 1e-5,
                      float_scope: FloatScope | None = None) -> Converted:
    """openvino-int8 by NNCF quantization-aware training: the QAT network's Q/DQ ONNX graph
    (_nncf_qat_onnx, not compacted: OpenVINO reads each Q/DQ pair as a FakeQuantize and runs the
    layer in int8) converted to IR, weights stored int8 - what NNCF's own QAT guide deploys."""
    import openvino as ov

    qdq = out / "qat.onnx"
    info = _nncf_qat_onnx(src, qdq, calib, train_faces, steps, lr, float_scope, compact=False)
    i, o = onnx_io(qdq, src.card)
    ov.save_model(ov.convert_model(str(qdq)), str(out / "model.xml"), compress_to_fp16=False)
    qdq.unlink()
    info.update(converter=f"openvino {ov.__version__} convert_model (from the QAT network's Q/DQ ONNX graph)", weights="int8")
    return Converted("model.xml", ["model.xml", "model.bin"], i, o, info, converter="openvino_int8_qat")


def openvino_int8_pt2e(src: ExportSource, out: Path, calib: np.ndarray, qat: dict | None = None) -> Converted:
    """openvino-int8 holding the very network tflite-int8 ships: PT2E int8 (sequentially calibrated,
    optionally `qat`-trained: pt2e_int8's training options), written as .tflite and read by
    OpenVINO's TFLite frontend, which turns every int8 tensor into a FakeQuantize of the same scale;
    the CPU plugin then runs the convolutions in int8. NNCF's post-training quantization has no
    sequential calibration: on dlib_resnet_edge it measured 97.80 % on LFW-dev, this route with 1,200
    QAT steps 98.03 % (benchmarks/results/export_matrix_edge15_default_int8.md)."""
    import openvino as ov

    if src.kind != "torch":
        raise ValueError(f"{src.path}: PT2E quantizes the PyTorch network, not an ONNX file")

    work = out / "pt2e_tflite"
    work.mkdir()
    lite = _tflite_pt2e(src, work, calib, qat)
    model = ov.convert_model(str(work / lite.model_file))
    _free_batch(model)
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    shutil.rmtree(work)
    i, o = _io(src.card, None)
    info = {**lite.info, "converter": f"litert-torch (PT2E quantized graph) -> openvino {ov.__version__} convert_model (TFLite frontend)",
            "weights": "int8", "batch": "dynamic"}
    return Converted("model.xml", ["model.xml", "model.bin"], i, o, info, converter="openvino_int8_pt2e")


def openvino_int8_pt2e_qat(src: ExportSource, out: Path, calib: np.ndarray, train_faces: np.ndarray, steps: int, lr: float = 1e-5) -> Converted:
    """openvino_int8_pt2e after `steps` PT2E quantization-aware training steps (tflite_int8_qat's network)."""
    _check_qat_inputs(src, calib, train_faces)
    conv = openvino_int8_pt2e(src, out, calib, {"train_faces": train_faces, "steps": steps, "lr": lr})
    conv.converter = "openvino_int8_pt2e_qat"
    return conv


def _free_batch(model) -> None:
    """Make an OpenVINO model converted from a batch-1 TFLite file take any batch: litert-torch
    writes batch 1 into the Reshape targets on the faces' path (flatten before the linear layer, the
    norm's keepdim), so those become -1 before the input's batch is freed. Raises ValueError on a Reshape whose
    target it cannot rewrite, rather than leaving a graph that is wrong for batches above 1."""
    import openvino as ov
    from openvino import opset13 as ops

    on_data_path: set[str] = set()  # nodes fed by the faces (weight-path Reshapes, e.g. of depthwise kernels, stay)
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Parameter" or any(i.get_source_output().get_node().get_name() in on_data_path for i in node.inputs()):
            on_data_path.add(node.get_name())  # get_name: unique per node (friendly names need not be)
        if node.get_type_name() != "Reshape" or node.get_name() not in on_data_path:
            continue
        target = node.input(1).get_source_output().get_node()
        if target.get_type_name() != "Constant":
            raise ValueError(f"Reshape {node.get_friendly_name()!r} has a computed target shape: cannot free the batch")
        shape = target.get_data().astype(np.int64)
        if shape[0] != 1 or (shape == -1).any():
            raise ValueError(f"Reshape {node.get_friendly_name()!r} targets {shape.tolist()}: expected batch 1 first")
        node.input(1).replace_source_output(ops.constant(np.concatenate([[-1], shape[1:]]).astype(np.int64)).output(0))
    dims = [d.get_length() for d in model.inputs[0].get_partial_shape()]
    model.reshape({model.inputs[0]: ov.PartialShape([-1, *dims[1:]])})


# --------------------------------------------------------------------------- ORT format


def _ort(src: ExportSource, out: Path, calib: np.ndarray | None, precision: str) -> Converted:
    """The onnx target's graph at `precision`, converted by ONNX Runtime's own tool to the ORT
    format. 'Fixed' optimisation for an ARM target platform: only optimisations every CPU can run
    (no x86 NCHWc layout), so the file runs on the phone it is made for."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    work = out / "onnx_source"
    work.mkdir()
    base = onnx_int8(src, work, calib) if precision == "int8" else onnx_fp32(src, work, calib)
    convert_onnx_models_to_ort(work / base.model_file, output_dir=work, optimization_styles=[OptimizationStyle.Fixed], target_platform="arm")
    made = sorted(work.glob("*.ort"))
    if len(made) != 1:
        raise RuntimeError(f"onnxruntime's ORT converter wrote {len(made)} .ort files, expected 1: {[p.name for p in made]}")
    shutil.move(str(made[0]), str(out / "model.ort"))
    shutil.rmtree(work)
    return Converted("model.ort", ["model.ort"], base.input, base.output,
                     {**base.info, "ort_format": "onnxruntime.tools.convert_onnx_models_to_ort, optimization style Fixed, target platform arm"})


def ort_fp32(src, out, calib):
    """The onnx-fp32 graph in ONNX Runtime's ORT format (mobile and reduced-operator builds)."""
    return _ort(src, out, calib, "fp32")


def ort_int8(src, out, calib):
    """The onnx-int8 graph (NNCF QDQ) in ONNX Runtime's ORT format."""
    return _ort(src, out, calib, "int8")


# --------------------------------------------------------------------------- OpenVINO


def _openvino(src: ExportSource, out: Path, calib, precision: str, float_scope: FloatScope | None = None) -> Converted:
    import openvino as ov

    onnx_path = _onnx_from_source(src, out / "source.onnx")
    i, o = onnx_io(onnx_path, src.card)
    model = ov.convert_model(str(onnx_path))
    info = {"converter": f"openvino {ov.__version__} convert_model (from the edgeface ONNX graph)"}
    if precision == "int8":
        import nncf

        if calib is None or len(calib) == 0:
            raise ValueError("int8 needs calibration faces")
        if i["normalization_in_graph"]:
            feed = lambda x: x  # noqa: E731
        else:
            from ..core.preprocess import normalize

            feed = lambda x: normalize(x, src.card, i["layout"])  # noqa: E731
        _log(f"NNCF int8 on OpenVINO IR with {len(calib)} calibration faces")
        float_scope = float_scope or FloatScope.for_card(src.card, FloatScope())
        model, kept, settings = quantize(model, CalibrationSet(calib, feed), float_scope, QuantizeConfig("nncf"))
        _log(f"NNCF model type {settings['model_type']}; kept in float: {kept or 'nothing'}")
        info.update(quantizer=f"nncf {nncf.__version__}", calibration_faces=int(len(calib)), kept_in_float=kept, quantization_settings=settings)
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=(precision == "fp16"))
    info["weights"] = {"fp32": "float32", "fp16": "float16 (compressed; the CPU plugin computes in fp32)", "int8": "int8"}[precision]
    onnx_path.unlink()
    return Converted("model.xml", ["model.xml", "model.bin"], i, o, info)


def openvino_fp32(src, out, calib):
    """OpenVINO IR (model.xml + model.bin) in float32."""
    return _openvino(src, out, calib, "fp32")


def openvino_fp16(src, out, calib):
    """OpenVINO IR with weights compressed to float16 (the CPU plugin computes in fp32)."""
    return _openvino(src, out, calib, "fp16")


def openvino_int8(src, out, calib):
    """OpenVINO IR quantized to int8 with NNCF on the calibration faces; raises ValueError without them."""
    return _openvino(src, out, calib, "int8")


# --------------------------------------------------------------------------- TFLite


def _tflite_from_onnx(src: ExportSource, out: Path, precision: str, calib) -> Converted:
    """An ONNX-only model: onnx2tf (export.onnx2tf_path), one conversion per source reused for
    fp32 and fp16 (int8 converts again, with calibration)."""
    from . import onnx2tf_path

    key = "onnx2tf-int8" if precision == "int8" else "onnx2tf"
    folder = src.cache.get(key) or src.cache.get("onnx2tf-int8")
    if folder is None or not Path(folder).is_dir():
        work = Path(tempfile.mkdtemp(prefix="edgeface-onnx2tf-"))
        folder = onnx2tf_path.convert(src.onnx_path, src.card, calib, work, precision == "int8", log=_log)
        src.cache[key] = folder
    shutil.copyfile(onnx2tf_path.output_file(Path(folder), precision), out / "model.tflite")
    i, o = _tflite_io(src, out / "model.tflite")
    info = {"converter": "onnx2tf (TensorFlow Lite converter)", "batch": 1, "source_format": "onnx"}
    if precision == "fp16":
        info.update(weights="float16", compute="float32 on CPU (XNNPACK), float16 on GPU delegates")
    if precision == "int8":
        info.update(quantizer="TFLite converter full-integer (per-channel weights, every op int8, float input/output)", calibration_faces=int(len(calib)))
    return Converted("model.tflite", ["model.tflite"], i, o, info)


def _tflite_fp32(src: ExportSource, path: Path) -> Path:
    import litert_torch

    from ..models.graph import sample_faces

    def make(p: Path) -> Path:
        edge = litert_torch.convert(src.graph(), (sample_faces(src.card, 1),))
        edge.export(str(p))
        return p

    return src.cached("tflite", path, make)


def _tflite_io(src: ExportSource, path: Path) -> tuple[dict, dict]:
    from ..runtime.backends import _tflite_interpreter_class

    cls, _ = _tflite_interpreter_class()
    it = cls(model_path=str(path))
    d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]
    # uint8 input: our graph with preprocessing inside; float input: a network converted from a
    # bare ONNX (onnx2tf), fed normalised faces and L2-normalised by the runtime.
    in_graph = np.dtype(d_in["dtype"]) == np.uint8
    i, o = _io(src.card, 1, np.dtype(d_in["dtype"]).name, in_graph, "NHWC")
    i["name"], o["name"] = d_in["name"], d_out["name"]
    if np.dtype(d_out["dtype"]) != np.float32:
        scale, zero = d_out["quantization"]
        o["dtype"] = "float32"
        o["quantized_as"] = {"dtype": np.dtype(d_out["dtype"]).name, "scale": float(scale), "zero_point": int(zero),
                             "note": "the output tensor is int8: dequantize as (q - zero_point) * scale, then L2-normalise"}
    return i, o


def tflite_fp32(src, out, calib):
    """TFLite float32, batch 1: litert-torch from a PyTorch model, onnx2tf from an ONNX file."""
    if src.kind == "onnx":
        return _tflite_from_onnx(src, out, "fp32", calib)
    p = _tflite_fp32(src, out / "model.tflite")
    i, o = _tflite_io(src, p)
    return Converted("model.tflite", ["model.tflite"], i, o, {"converter": "litert-torch", "batch": 1})


def tflite_fp16(src, out, calib):
    """TFLite with float16 weights (float32 compute on CPU), batch 1: the fp32 conversion cast by ai-edge-quantizer,
    or onnx2tf from an ONNX file."""
    if src.kind == "onnx":
        return _tflite_from_onnx(src, out, "fp16", calib)
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    fp32 = _tflite_fp32(src, out / "model.fp32.tflite")
    q = quantizer.Quantizer(str(fp32))
    q.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    q.quantize().export_model(str(out / "model.tflite"), overwrite=True)
    fp32.unlink()
    i, o = _tflite_io(src, out / "model.tflite")
    info = {"quantizer": "ai-edge-quantizer float casting", "weights": "float16", "compute": "float32 on CPU (XNNPACK), float16 on GPU delegates",
            "converter": "litert-torch + ai-edge-quantizer", "batch": 1}
    return Converted("model.tflite", ["model.tflite"], i, o, info)


def tflite_int8(src, out, calib):
    """Full-integer TFLite through PT2E (compress.pt2e: why not ai-edge-quantizer is measured there)."""
    if src.kind == "onnx":
        return _tflite_from_onnx(src, out, "int8", calib)
    return _tflite_pt2e(src, out, calib)


def tflite_int8_qat(src: ExportSource, out: Path, calib: np.ndarray, train_faces: np.ndarray, steps: int, lr: float = 1e-5) -> Converted:
    """tflite-int8 by PT2E quantization-aware training: calibrated like tflite_int8, then `steps`
    steps retraining the fake-quantized graph to the float model's own embeddings of `train_faces`."""
    _check_qat_inputs(src, calib, train_faces)
    conv = _tflite_pt2e(src, out, calib, {"train_faces": train_faces, "steps": steps, "lr": lr})
    conv.converter = "tflite_int8_qat"
    return conv


def _tflite_pt2e(src: ExportSource, out: Path, calib: np.ndarray, qat: dict | None = None) -> Converted:
    """model.tflite from the PT2E-quantized graph of a PyTorch source (`qat`: pt2e_int8's training options)."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    from ..compress.pt2e import DEFAULT_FLOAT_SCOPE
    from ..models.graph import sample_faces

    qat = qat or {}
    _log(f"PT2E int8 with {len(calib)} calibration faces" + (f", then {qat['steps']} QAT steps on {len(qat['train_faces'])} training faces" if qat else ""))
    scope = FloatScope.for_card(src.card, DEFAULT_FLOAT_SCOPE)
    qmodel, quantizer, info = quantize(src.net, calib, scope, QuantizeConfig("pt2e", {"card": src.card, **qat}))
    # litert warns "converted in training mode": an exported GraphModule keeps training=True,
    # but its ops were captured from the eval-mode graph (BN folded, no dropout), so nothing differs.
    litert_torch.convert(qmodel, (sample_faces(src.card, 1),), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out / "model.tflite"))
    i, o = _tflite_io(src, out / "model.tflite")
    info.update(converter="litert-torch (PT2E quantized graph)", batch=1)
    return Converted("model.tflite", ["model.tflite"], i, o, info)


# --------------------------------------------------------------------------- TensorRT


def _tensorrt(src: ExportSource, out: Path, calib, precision: str) -> Converted:
    onnx_path = _onnx_from_source(src, out / "model.onnx")
    i, o = onnx_io(onnx_path, src.card)
    h, w = src.card.input_size
    shape = lambda b: [b, h, w, 3] if i["layout"] == "NHWC" else [b, 3, h, w]  # noqa: E731
    settings = {
        "onnx": "model.onnx",
        "engine": "model.engine",
        "precision": precision,
        "flags": ["FP16"] + (["INT8"] if precision == "int8" else []),
        "input": i["name"],
        "profile": {"min": shape(1), "opt": shape(32), "max": shape(256)},
        "workspace_bytes": 1 << 30,
        "trtexec": (f"trtexec --onnx=model.onnx --saveEngine=model.engine --fp16{' --int8 --calib=calibration.cache' if precision == 'int8' else ''} "
                    f"--minShapes={i['name']}:{'x'.join(map(str, shape(1)))} --optShapes={i['name']}:{'x'.join(map(str, shape(32)))} "
                    f"--maxShapes={i['name']}:{'x'.join(map(str, shape(256)))}"),
    }
    files = ["model.onnx", "tensorrt_build.json"]
    if precision == "int8":
        if calib is None or len(calib) == 0:
            raise ValueError("int8 needs calibration faces")
        np.save(out / "calibration_faces.npy", np.ascontiguousarray(calib), allow_pickle=False)
        settings["calibration"] = {"faces": "calibration_faces.npy", "count": int(len(calib)), "dtype": "uint8", "layout": "NHWC",
                                   "calibrator": "IInt8EntropyCalibrator2"}
        files.append("calibration_faces.npy")
    (out / "tensorrt_build.json").write_text(json.dumps(settings, indent=2))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        _log("TensorRT is not installed here: wrote the TensorRT-ready ONNX and tensorrt_build.json; NO engine was built. "
             "Build it on the target with `edgeface export BUNDLE/model.onnx --target tensorrt --precision "
             f"{precision} --card BUNDLE/edgeface.json` or with the trtexec line in tensorrt_build.json.")
        return Converted("model.onnx", files, i, o, {"converter": "TensorRT-ready ONNX (engine not built: tensorrt not importable here)", "build": settings},
                         built=False, verify_file="model.onnx", verify_backend="onnxruntime")
    build_tensorrt_engine(out / "model.onnx", out / "model.engine", settings, calib)
    files.insert(0, "model.engine")
    return Converted("model.engine", files, i, o, {"converter": "tensorrt python API", "build": settings})


def build_tensorrt_engine(onnx_path: Path, engine_path: Path, settings: dict, calib: np.ndarray | None) -> Path:
    """Build a serialized engine with TensorRT's Python API (fp16, optional int8 with an entropy calibrator)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(k)) for k in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings["workspace_bytes"]))
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    p = settings["profile"]
    profile.set_shape(settings["input"], p["min"], p["opt"], p["max"])
    config.add_optimization_profile(profile)
    if "INT8" in settings["flags"]:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_calibrator(trt, calib, engine_path.with_suffix(".calib.cache"))
        config.set_calibration_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ValueError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    engine_path.write_bytes(bytes(blob))
    return engine_path


def _make_calibrator(trt, calib: np.ndarray, cache: Path):
    from cuda.bindings import runtime as cudart

    class FaceCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches = [np.ascontiguousarray(calib[k : k + 16]) for k in range(0, len(calib) - 15, 16)]
            self.k = 0
            self.dptr = cudart.cudaMalloc(self.batches[0].nbytes)[1]

        def get_batch_size(self):
            return 16

        def get_batch(self, names):
            if self.k >= len(self.batches):
                return None
            b = self.batches[self.k]
            self.k += 1
            cudart.cudaMemcpy(self.dptr, b.ctypes.data, b.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            return [int(self.dptr)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return FaceCalibrator()


def tensorrt_fp16(src, out, calib):
    """TensorRT fp16 engine with a dynamic-batch profile; where TensorRT is not installed, only the TensorRT-ready
    ONNX and tensorrt_build.json (built=False, verified through onnxruntime)."""
    return _tensorrt(src, out, calib, "fp16")


def tensorrt_int8(src, out, calib):
    """TensorRT int8 engine calibrated on the faces (saved as calibration_faces.npy); where TensorRT is not installed,
    only the ONNX, the faces and tensorrt_build.json. Raises ValueError without calibration faces."""
    return _tensorrt(src, out, calib, "int8")


# --------------------------------------------------------------------------- tools run as programs


# PyPI MNN's `mnnconvert` script imports MNN.tools.utils.log, which (MNN 3.6.1), when the
# aliyun-log-python-sdk package is missing, runs `pip install -U aliyun-log-python-sdk` with
# whatever pip is first on PATH, then sends a usage record (machine id, model uuid, arguments) to
# Alibaba Cloud. Measured here: that pip call made each conversion wait minutes (the 268-739 s
# rows of issue 19's first pass; 5 s without it) and installed the SDK into the system Python.
# The conversion itself is MNN's `_tools.mnnconvert` extension: run it directly, in this Python.
# It returns True even when it failed (e.g. a missing input file): _mnn checks the output file.
_MNNCONVERT_WITHOUT_LOGGER = "import sys, _tools; _tools.mnnconvert(sys.argv)"


def _run_tool(name: str, args: list[str], cwd: Path | None = None, timeout: int = 1800) -> str:
    """Run a converter program (mnnconvert, pnnx, ncnn2table...) and return its output; a failure
    raises ValueError with the program's last lines."""
    import subprocess

    from ..core.targets import find_tool

    exe = find_tool(name)
    if exe is None:
        raise ValueError(f"{name} not found (beside {sys.executable} or on PATH)")
    command = [sys.executable, "-c", _MNNCONVERT_WITHOUT_LOGGER, *args] if name == "mnnconvert" else [exe, *args]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    text = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        raise ValueError(f"{name} failed (exit {proc.returncode}): {' | '.join(text.strip().splitlines()[-6:])}")
    return text


# --------------------------------------------------------------------------- MNN

_MNN_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--weightQuantBits", "8"]}
_MNN_STORAGE = {"fp32": "float32", "fp16": "conv weights float16 (mnnconvert --fp16), computed in float32 on CPUs without fp16",
                "int8": "conv/matmul weights int8, symmetric per channel (mnnconvert --weightQuantBits 8), activations float"}


def _mnn(src: ExportSource, out: Path, precision: str, graph: str) -> Converted:
    import MNN

    onnx_path = _graph_onnx(src, out / "source.onnx", graph)
    i, o = onnx_io(onnx_path, src.card)
    _run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(out / "model.mnn"), "--bizCode", "edgeface",
                             *_MNN_FLAGS[precision]])
    onnx_path.unlink()
    if not (out / "model.mnn").is_file():
        raise ValueError("mnnconvert reported success but wrote no model.mnn")
    if i["dtype"] == "uint8":
        h, w = src.card.input_size
        i["note"] += (f" MNN describes this input as NCHW with shape [1, {h}, {w}, 3] (mnnconvert's label for a uint8 NHWC input): feed the "
                      "NHWC crop under that label, as edgeface.runtime's MNN backend does.")
    info = {"converter": f"mnnconvert (MNN {MNN.version()}) from the {'core' if graph == 'core' else 'edgeface'} ONNX graph",
            "graph": graph, "weights": _MNN_STORAGE[precision], "dynamic_batch": True}
    return Converted("model.mnn", ["model.mnn"], i, o, info)


def mnn_fp32(src, out, calib, graph: str = "full"):
    """MNN model (model.mnn) in float32, converted by mnnconvert from the full or core ONNX graph."""
    return _mnn(src, out, "fp32", graph)


def mnn_fp16(src, out, calib, graph: str = "full"):
    """MNN model (model.mnn) with float16 weights, converted by mnnconvert from the full or core ONNX graph."""
    return _mnn(src, out, "fp16", graph)


def mnn_int8(src, out, calib, graph: str = "full"):
    """MNN model (model.mnn) with int8 weights, converted by mnnconvert from the full or core ONNX graph."""
    return _mnn(src, out, "int8", graph)


# --------------------------------------------------------------------------- ncnn


def _ncnn_io(src: ExportSource, param: Path) -> tuple[dict, dict]:
    from ..runtime.backends import ncnn_blob_names

    i, o = _io(src.card, 1, "float32", False, "NCHW")
    i["name"], o["name"] = ncnn_blob_names(param)
    i["note"] += "; ncnn.Mat(c, h, w) per face (the Python binding wraps the numpy array without copying: keep it alive until extract returns)"
    return i, o


def _pnnx(src: ExportSource, work: Path, fp16: bool) -> tuple[Path, Path]:
    """pnnx on the core ONNX in `work` -> (core.ncnn.param, core.ncnn.bin)."""
    onnx_path = core_onnx(src, work / "core.onnx")
    h, w = src.card.input_size
    _run_tool("pnnx", [onnx_path.name, f"inputshape=[1,3,{h},{w}]", f"fp16={int(fp16)}"], cwd=work)
    param, weights = work / "core.ncnn.param", work / "core.ncnn.bin"
    if not (param.is_file() and weights.is_file()):
        raise ValueError(f"pnnx wrote no ncnn model in {work}")
    left = ncnn_unconverted_layers(param)
    if left:
        shown = ", ".join(f"{t} ({n})" for t, n in left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
        raise ValueError(f"ncnn cannot run this network: pnnx left {len(left)} op(s) with no ncnn layer, first {shown} "
                         "(ncnn tensors have at most 4 dimensions: reshapes to 5-d, as in multi-head attention's qkv split, have no ncnn form); "
                         "the onnx, openvino, tflite and mnn targets take it")
    return param, weights


def ncnn_unconverted_layers(param: Path) -> list[tuple[str, str]]:
    """(type, name) of the layers of an ncnn .param that pnnx could not lower to ncnn: it writes
    them under their PyTorch names (Tensor.reshape, torch.unbind, F.*), which ncnn cannot load."""
    rows = [ln.split() for ln in Path(param).read_text().splitlines()[2:] if ln.strip()]
    return [(r[0], r[1]) for r in rows if "." in r[0]]


def _ncnn(src: ExportSource, out: Path, precision: str) -> Converted:
    work = Path(tempfile.mkdtemp(prefix="edgeface-pnnx-"))
    try:
        param, weights = _pnnx(src, work, fp16=precision == "fp16")
        shutil.copyfile(param, out / "model.ncnn.param")
        shutil.copyfile(weights, out / "model.ncnn.bin")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    i, o = _ncnn_io(src, out / "model.ncnn.param")
    weights_desc = "float16 (pnnx fp16=1)" if precision == "fp16" else "float32 (pnnx fp16=0: exact parity; its fp16 default gave 0.999998)"
    info = {"converter": "pnnx from the core ONNX graph", "graph": "core", "opset": onnx_opset(src.onnx_path) if src.kind == "onnx" else CORE_OPSET, "weights": weights_desc, "batch": 1,
            "runtime_options": "edgeface's ncnn backend turns fp16 storage/arithmetic off (accuracy first)"}
    return Converted("model.ncnn.param", ["model.ncnn.param", "model.ncnn.bin"], i, o, info)


def ncnn_fp32(src, out, calib):
    """ncnn model (model.ncnn.param + .bin) in float32, converted by pnnx from the core graph; batch 1."""
    return _ncnn(src, out, "fp32")


def ncnn_fp16(src, out, calib):
    """ncnn model (model.ncnn.param + .bin) with float16 weights, converted by pnnx from the core graph; batch 1."""
    return _ncnn(src, out, "fp16")


def ncnn_int8(src, out, calib):
    """ncnn's own post-training int8: ncnn2table (KL calibration table from the aligned faces,
    written as PNGs with the card's mean and 1/std) then ncnn2int8 on the fp32 model. Both are
    ncnn's C++ command-line tools; neither PyPI package ships them."""
    from ..runtime.conformance import _write_png
    from ..core.targets import find_tool

    missing = [t for t in ("ncnn2table", "ncnn2int8") if find_tool(t) is None]
    if missing:
        raise ValueError(f"ncnn int8 needs ncnn's command-line tools {', '.join(missing)} (built from ncnn's source; neither the PyPI "
                         "ncnn/pnnx packages nor Debian ship them): none found beside this Python or on PATH")
    if calib is None or len(calib) == 0:
        raise ValueError("int8 needs calibration faces")
    if src.card.color_order == "GRAY":
        raise ValueError("ncnn2table feeds 1-channel images for GRAY; this card's network takes 3 channels of luma: not supported")
    work = Path(tempfile.mkdtemp(prefix="edgeface-ncnn-int8-"))
    try:
        param, weights = _pnnx(src, work, fp16=False)
        (work / "faces").mkdir()
        for k, face in enumerate(calib):
            _write_png(work / "faces" / f"{k:04d}.png", face)
        (work / "images.txt").write_text("".join(f"{p}\n" for p in sorted((work / "faces").glob("*.png"))))
        h, w = src.card.input_size
        mean = ",".join(f"{m:g}" for m in src.card.mean)
        norm = ",".join(f"{1 / s:.8g}" for s in src.card.std)
        _run_tool("ncnn2table", [str(param), str(weights), str(work / "images.txt"), str(work / "model.table"), f"mean=[{mean}]",
                                 f"norm=[{norm}]", f"shape=[{w},{h},3]", f"pixel={src.card.color_order}", "thread=2", "method=kl"])
        _run_tool("ncnn2int8", [str(param), str(weights), str(out / "model.ncnn.param"), str(out / "model.ncnn.bin"), str(work / "model.table")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    i, o = _ncnn_io(src, out / "model.ncnn.param")
    info = {"converter": "pnnx + ncnn2table (KL) + ncnn2int8", "graph": "core", "calibration_faces": int(len(calib)), "batch": 1}
    return Converted("model.ncnn.param", ["model.ncnn.param", "model.ncnn.bin"], i, o, info)


# --------------------------------------------------------------------------- Core ML

COREML_REFERENCE = "core_reference.onnx"


def _coreml(src: ExportSource, out: Path, calib, precision: str) -> Converted:
    """A Core ML ML program from the traced core network. Core ML predicts only on macOS/iOS, so
    the bundle is verified through the core ONNX it was converted beside (core_reference.onnx,
    the same network through onnxruntime) and marked not-verified: its conformance set is the
    on-device check."""
    import coremltools as ct
    import torch

    if src.kind != "torch":
        raise ValueError(f"{src.path}: Core ML is converted from a PyTorch model (coremltools no longer reads ONNX)")
    h, w = src.card.input_size
    # torch.export, not a TorchScript trace: a trace records shape arithmetic (dlib_resnet's
    # zero-padded residual sums) as int casts coremltools cannot convert; an exported program of a
    # fixed input size has those pads as constants.
    program = torch.export.export(src.net.eval(), (torch.zeros(1, 3, h, w),)).run_decompositions({})
    model = ct.convert(program, inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, 3, h, w), dtype=np.float32)],
                       outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)], convert_to="mlprogram",
                       compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16)
    info = {"converter": f"coremltools {ct.__version__} (torch.export program -> ML program)", "graph": "core", "minimum_deployment_target": "iOS16",
            "compute_precision": "float16", "batch": 1}
    if precision == "int8":
        from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

        model = linear_quantize_weights(model, OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")))
        info["weights"] = "int8, symmetric per channel (coremltools.optimize linear_quantize_weights), fp16 compute"
    model.short_description = f"{src.card.name}: aligned face (normalised, NCHW) -> {src.card.embedding_size}-d embedding (L2-normalise it)"
    model.user_defined_metadata["edgeface_card"] = src.card.to_json()
    model.save(str(out / "model.mlpackage"))
    files = sorted(str(p.relative_to(out)) for p in (out / "model.mlpackage").rglob("*") if p.is_file())
    core_onnx(src, out / COREML_REFERENCE)
    i, o = _io(src.card, 1, "float32", False, "NCHW")
    i["name"], o["name"] = INPUT_NAME, OUTPUT_NAME
    reason = ("Core ML predicts only on macOS/iOS and this export ran on " + sys.platform + ": the .mlpackage itself was not run. Parity, "
              f"LFW-dev and thresholds were measured on {COREML_REFERENCE} (the same core network through onnxruntime); check the package "
              "on the device against conformance/ (`edgeface export --check BUNDLE` on a Mac).")
    return Converted("model.mlpackage", files + [COREML_REFERENCE], i, o, info, built=False, verify_file=COREML_REFERENCE,
                     verify_backend="onnxruntime", unbuilt_status="not-verified", unbuilt_reason=reason)


def coreml_fp16(src, out, calib):
    """Core ML ML program in float16 from the PyTorch model (verified through its core ONNX; not-verified until run on the device)."""
    return _coreml(src, out, calib, "fp16")


def coreml_int8(src, out, calib):
    """Core ML ML program with int8 weights from the PyTorch model (verified through its core ONNX; not-verified until run on the device)."""
    return _coreml(src, out, calib, "int8")


# One converter function per row of the target table, found by the name the row gives: adding a
# target is its row in edgeface.core.targets plus its function here (and, for a new format, a backend).
CONVERTERS: dict[str, Callable[[ExportSource, Path, np.ndarray | None], Converted]] = {}
for _row in TARGETS:
    if not callable(globals().get(_row.converter)):
        raise ImportError(f"edgeface.core.targets row {_row.key} names converter {_row.converter!r}, which edgeface.export.converters does not define")
    CONVERTERS[_row.converter] = globals()[_row.converter]

# The quantizers of each int8 target (export --quantizer; the first is the target's default), each as
# (post-training converter, quantization-aware training converter for export --qat N).
INT8_QUANTIZERS: dict[str, dict[str, tuple[Callable[..., Converted], Callable[..., Converted]]]] = {
    "onnx-int8": {"nncf": (onnx_int8, onnx_int8_qat)},
    "openvino-int8": {"nncf": (openvino_int8, openvino_int8_qat), "pt2e": (openvino_int8_pt2e, openvino_int8_pt2e_qat)},
    "tflite-int8": {"pt2e": (tflite_int8, tflite_int8_qat)},
}

for _key, _routes in INT8_QUANTIZERS.items():  # the default quantizer's PTQ route is the target row's own converter
    _row = next(t for t in TARGETS if t.key == _key)
    if next(iter(_routes.values()))[0] is not CONVERTERS[_row.converter]:
        raise ImportError(f"INT8_QUANTIZERS[{_key!r}]: the default quantizer's post-training converter must be the target row's {_row.converter}")


def default_quantizer(target_key: str) -> str | None:
    """The quantizer an int8 target uses unless told otherwise (None: not an int8 target)."""
    return next(iter(INT8_QUANTIZERS.get(target_key, {})), None)


# --------------------------------------------------------------------------- parity failures: which op


def _run_cut_ncnn(cut: Path, x: np.ndarray) -> np.ndarray:
    from ..runtime.backends import make_backend

    work = Path(tempfile.mkdtemp(prefix="edgeface-cut-ncnn-"))
    try:
        shutil.copyfile(cut, work / "core.onnx")
        _run_tool("pnnx", ["core.onnx", f"inputshape=[1,{','.join(str(d) for d in x.shape[1:])}]", "fp16=0"], cwd=work)
        left = ncnn_unconverted_layers(work / "core.ncnn.param")
        if left:
            raise ValueError(f"pnnx left {left[0][0]} ({left[0][1]}) unconverted")
        return make_backend("ncnn", work / "core.ncnn.param", 1).run(x)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_cut_mnn(cut: Path, x: np.ndarray) -> np.ndarray:
    import MNN

    work = Path(tempfile.mkdtemp(prefix="edgeface-cut-mnn-"))
    try:
        _run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(cut), "--MNNModel", str(work / "cut.mnn"), "--bizCode", "edgeface"])
        runtime = MNN.nn.create_runtime_manager(({"backend": "CPU", "precision": "high", "numThread": 1},))
        names = MNN.nn.load_module_from_file(str(work / "cut.mnn"), [], [], runtime_manager=runtime).get_info()
        module = MNN.nn.load_module_from_file(str(work / "cut.mnn"), names["inputNames"], names["outputNames"], runtime_manager=runtime)
        var = module.get_info()["inputs"][0]
        outs = []
        for face in x:  # one at a time: the cut graph's batch is whatever the source said
            xi = np.ascontiguousarray(face[None], dtype=np.uint8 if var.dtype == MNN.expr.uint8 else np.float32)
            y = module.forward(MNN.expr.const(xi, list(xi.shape), var.data_format, var.dtype))
            if y.data_format == MNN.expr.NC4HW4:
                y = MNN.expr.convert(y, MNN.expr.NCHW)
            outs.append(np.array(y.read(), np.float32).reshape(-1))
        return np.stack(outs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def diagnose_divergence(src: ExportSource, fmt: str, graph: str, faces: np.ndarray, log=_log) -> str:
    """For a failed ncnn / MNN parity: the first op of the ONNX graph the engine was converted from
    whose output the engine computes differently (export.diagnose), as one line for the failures."""
    from ..core.preprocess import normalize
    from .diagnose import describe, first_diverging_op

    if fmt not in ("ncnn", "mnn"):
        raise ValueError(f"no op-by-op diagnosis for {fmt}")
    work = Path(tempfile.mkdtemp(prefix="edgeface-diagnose-src-"))
    try:
        use = "core" if fmt == "ncnn" else graph
        path = _graph_onnx(src, work / "source.onnx", use)
        i, _ = onnx_io(path, src.card)
        x = faces if i["normalization_in_graph"] else normalize(faces, src.card, i["layout"])
        log(f"parity failed: bisecting the {use} ONNX graph op by op through {fmt} ({len(x)} faces)")
        res = first_diverging_op(path, _run_cut_ncnn if fmt == "ncnn" else _run_cut_mnn, x, log=log)
        return describe(res, fmt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
