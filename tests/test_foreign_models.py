"""Foreign models (issue 38): a user's nn.Module by import path, a torch.export .pt2 file and a bare
ONNX network, each described by `edgeface card new` and exported to bundles with the kit's uint8
NHWC contract, verified against the original model. The model is a tiny EdgeFace-like package
(LayerNorm, GELU, depthwise conv, channel attention) written in the test: no foreign weights."""
import io
import json
import pickle
import sys

import numpy as np
import pytest

from tiny_models import TINY_EDGEFACE_EMBEDDING, write_tiny_edgeface

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """(import path, weights, folder): the user's package on sys.path, as after `pip install -e .`."""
    folder = tmp_path_factory.mktemp("user_pkg")
    spec, weights = write_tiny_edgeface(folder)
    sys.path.insert(0, str(folder))
    yield spec, weights, folder
    sys.path.remove(str(folder))
    sys.modules.pop("tiny_edgeface_nets", None)


@pytest.fixture(scope="module")
def model_files(user_model):
    """The same network as a dynamic-batch .pt2 and as a bare opset-17 float NCHW ONNX, cards beside them."""
    from edgeface.cli import main
    from edgeface.compress.evalfast import export_onnx
    from edgeface.models.foreign import build_from_import_path

    spec, weights, folder = user_model
    net = build_from_import_path(spec, weights)
    program = torch.export.export(net, (torch.zeros(2, 3, 112, 112),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    pt2 = folder / "edgeface_like.pt2"
    torch.export.save(program, str(pt2))
    bare = folder / "edgeface_like.onnx"
    from edgeface.core.card import ModelCard

    export_onnx(net, ModelCard(name="x", arch="x", input_size=(112, 112), embedding_size=32, template="arcface_112x112"), bare, opset=17)
    for f in (pt2, bare):
        assert main(["card", "new", str(f), "--template", "arcface_112x112", "--mean", "127.5", "--std", "127.5"]) == 0
    card = folder / "module.card.json"
    assert main(["card", "new", spec, "--weights", str(weights), "--input-size", "112x112", "--template", "arcface_112x112",
                 "--mean", "127.5", "--std", "127.5", "--out", str(card)]) == 0
    return {"net": net, "pt2": pt2, "onnx": bare, "card": card}


def test_card_new_reads_the_graph_and_runs_it(user_model, model_files, capsys, tmp_path):
    from edgeface.core.card import read_card_file
    from edgeface.models.foreign import sidecar_card

    for f in (model_files["pt2"], model_files["onnx"], model_files["card"]):
        card = read_card_file(f if f.suffix == ".json" else sidecar_card(f))
        assert card.input_size == (112, 112) and card.embedding_size == TINY_EDGEFACE_EMBEDDING  # measured: the default would be 128
        assert card.mean == (127.5,) * 3 and card.std == (127.5,) * 3 and card.template == "arcface_112x112"
    assert read_card_file(sidecar_card(model_files["onnx"])).description.startswith("onnx (opset 17)")
    from edgeface.cli import main

    # the normalisation has no default: a wrong one fails silently, so it must be said
    with pytest.raises(SystemExit):
        main(["card", "new", str(model_files["pt2"]), "--template", "arcface_112x112"])
    # a module does not say its input size; a file's graph does, and a contradicting --input-size is refused
    assert main(["card", "new", user_model[0], "--weights", str(user_model[1]), "--template", "arcface_112x112", "--mean", "127.5",
                 "--std", "127.5", "--out", str(tmp_path / "c.json")]) == 1
    assert "--input-size" in capsys.readouterr().err
    assert main(["card", "new", str(model_files["pt2"]), "--input-size", "112x96", "--template", "arcface_112x112", "--mean", "127.5",
                 "--std", "127.5", "--out", str(tmp_path / "c.json")]) == 1
    assert "112x112" in capsys.readouterr().err


def test_foreign_torch_loads_by_card_and_refuses_pickles_and_bad_weights(user_model, model_files, tmp_path):
    from edgeface.models.embedder import TorchEmbedder
    from edgeface.zoo import load_torch_model

    spec, weights, _ = user_model
    faces = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    net, card = load_torch_model(spec, weights=str(weights), card=str(model_files["card"]))
    ref = TorchEmbedder(net, card, device="cpu").embed(faces)
    pt2, pcard = load_torch_model(str(model_files["pt2"]))  # its card found beside it
    assert pcard.embedding_size == 32
    assert np.sum(TorchEmbedder(pt2, pcard, device="cpu").embed(faces) * ref, axis=1).min() > 0.99999
    with pytest.raises(ValueError, match="card new"):
        load_torch_model(spec, weights=str(weights))  # no card: say how to write one
    pickled = tmp_path / "w.pt"
    torch.save(net.state_dict(), pickled)
    with pytest.raises(ValueError, match="safetensors files only"):
        load_torch_model(spec, weights=str(pickled), card=str(model_files["card"]))
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(32, 32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="does not fit the module.*missing"):
        load_torch_model(spec, weights=str(tmp_path / "bad.safetensors"), card=str(model_files["card"]))
    static = torch.export.export(net, (torch.zeros(1, 3, 112, 112),))
    torch.export.save(static, str(tmp_path / "static.pt2"))
    with pytest.raises(ValueError, match="batch 1 only"):
        load_torch_model(str(tmp_path / "static.pt2"), card=str(model_files["card"]))


class _Boom:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pt2_reader_runs_with_every_pickle_fallback_refused(model_files):
    """torch.export.load falls back to torch.load(weights_only=False) and pickle.loads for some
    payloads; inside no_pickle() those fallbacks refuse, and afterwards torch is as it was."""
    from edgeface.models.foreign import load_exported_program, no_pickle

    blob = io.BytesIO()
    torch.save({"x": _Boom()}, blob)
    real = torch.load
    with no_pickle():
        blob.seek(0)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(blob, weights_only=False)
        import torch.export.pt2_archive._package as pkg

        with pytest.raises(pickle.UnpicklingError, match="refused"):
            pkg.pickle.loads(pickle.dumps(_Boom()))
    assert torch.load is real
    assert load_exported_program(model_files["pt2"]).graph_signature.user_inputs  # a plain program loads


def test_bare_onnx_is_wrapped_into_the_uint8_contract_keeping_its_opset(user_model, model_files):
    onnx = pytest.importorskip("onnx")
    from edgeface.core.card import read_card_file
    from edgeface.core.ort_session import onnxruntime_session
    from edgeface.export.converters import onnx_opset, wrap_bare_onnx
    from edgeface.models.embedder import TorchEmbedder
    from edgeface.models.foreign import sidecar_card

    card = read_card_file(sidecar_card(model_files["onnx"]))
    faces = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    for order in ("RGB", "BGR"):
        c = card.replace(color_order=order)
        wrapped = wrap_bare_onnx(onnx.load(str(model_files["onnx"])), c)
        assert onnx_opset(wrapped) == 17 and wrapped.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        e = onnxruntime_session(wrapped.SerializeToString()).run(None, {"faces": faces})[0]
        ref = TorchEmbedder(model_files["net"], c, device="cpu").embed(faces)
        assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5) and np.sum(e * ref, axis=1).min() > 0.99999, order


# --------------------------------------------------------------------------- to verified bundles (slow: aligned faces)

SMALL = dict(n_calib=64, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("source,target,precision", [("module", "onnx", "fp32"), ("pt2", "tflite", "fp32"), ("onnx", "onnx", "fp32"),
                                                      ("module", "tflite", "int8"), ("pt2", "openvino", "int8")])
def test_foreign_model_reaches_a_verified_uint8_bundle(shared, user_model, model_files, tmp_path, source, target, precision):
    """Each way in ends in a verified bundle taking the same uint8 NHWC faces as every other bundle,
    its parity measured against the original model (the torch module / program, or the ONNX file),
    its metadata saying the file's true opset."""
    from edgeface.cli import main
    from edgeface.models.embedder import TorchEmbedder
    from edgeface.runtime.bundle import load_bundle

    spec, weights, _ = user_model
    args = {"module": [spec, "--weights", str(weights), "--card", str(model_files["card"])], "pt2": [str(model_files["pt2"])],
            "onnx": [str(model_files["onnx"])]}[source]
    out = tmp_path / "bundle"
    assert main(["export", *args, "--target", target, "--precision", precision, "--out", str(out), "--n-calib", "64", "--n-verify", "40",
                 "--n-impostor", "120", "--lfw-folds", "0", "--quiet"]) == 0
    meta = json.loads((out / "edgeface.json").read_text())
    assert meta["status"] == "verified" and meta["parity"]["cosine_min"] >= (0.999 if precision == "fp32" else 0.97)
    if precision == "int8" and target == "openvino":  # NNCF read the graph: LayerNorm / softmax / GELU -> transformer settings
        assert meta["export"]["details"]["quantization_settings"]["model_type"] == "transformer"
    if precision == "int8" and target == "tflite":  # PT2E (it crashed on this kind of graph: a shared spec pointing at the float first conv)
        assert meta["export"]["details"]["kept_in_float"][0] == "net.stem"
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NHWC" and meta["input"]["normalization_in_graph"]
    assert meta["source"]["kind"] == ("onnx" if source == "onnx" else "torch") and meta["embedding_size"] == 32
    if target == "onnx":
        import onnx

        assert meta["export"]["details"]["opset"] == onnx.load(str(out / "model.onnx")).opset_import[0].version
    if source == "onnx":
        assert meta["export"]["details"]["opset"] == 17 and "bare float32 NCHW network (opset 17)" in meta["export"]["details"]["source_graph"]
    b = load_bundle(out)
    faces = np.random.default_rng(3).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    ref = TorchEmbedder(model_files["net"], b.card, device="cpu").embed(faces)  # the original module
    assert np.sum(b.embed(faces) * ref, axis=1).min() > 0.999


# --------------------------------------------------------------------------- int8 settings picked from the graph


def test_int8_picks_transformer_settings_from_the_graph_and_says_why(model_files, tmp_path):
    """The one quantization front door (compress.quantize) reads the graph: LayerNorm / softmax /
    GELU -> NNCF model_type TRANSFORMER (EdgeFace-XXS: cosine 0.979 vs 0.16-0.31 with the CNN
    defaults), which leaves the residual sums and normalisations in float; a plain CNN graph keeps
    NNCF's defaults. The settings and the reason travel into the export details."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("nncf")
    from edgeface.compress.quantize import CalibrationSet, quantize
    from edgeface.core.card import read_card_file
    from edgeface.export.converters import wrap_bare_onnx
    from edgeface.models.foreign import sidecar_card
    from tiny_models import TINY_CARD, write_tiny_onnx

    card = read_card_file(sidecar_card(model_files["onnx"]))
    graph = wrap_bare_onnx(onnx.load(str(model_files["onnx"])), card)
    faces = np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    q, kept, settings = quantize(graph, CalibrationSet(faces, lambda x: {"faces": x}))
    assert settings["model_type"] == "transformer" and settings["transformer_ops"]["LayerNormalization"] == 6
    assert "LayerNorm" in settings["why"] and kept  # the first and last layers, as for every model
    producers = {o: n for n in q.graph.node for o in n.output}
    consts = {t.name for t in q.graph.initializer}
    quantized_input = [n.name for n in q.graph.node if n.op_type in ("Add", "Div", "LayerNormalization", "Softmax")
                       for i in n.input if i in producers and producers[i].op_type == "DequantizeLinear" and producers[i].input[0] not in consts]
    assert not quantized_input, quantized_input  # NNCF's CNN defaults quantize 2 residual Adds and 2 Divs of this graph

    cnn = onnx.load(str(write_tiny_onnx(tmp_path / "cnn.onnx", write_card=False)))
    _, _, cnn_settings = quantize(cnn, CalibrationSet(np.zeros((4, *TINY_CARD.input_size, 3), np.uint8), lambda x: {"faces": x}))
    assert cnn_settings["model_type"].startswith("cnn") and not cnn_settings["transformer_ops"]


def test_ncnn_refuses_an_attention_network_naming_the_op(user_model, model_files, tmp_path):
    """pnnx cannot lower the channel attention's 5-d qkv split to ncnn; the converter says which op,
    in one line, instead of writing a model ncnn cannot load."""
    pytest.importorskip("ncnn")
    from edgeface.core.targets import find_tool

    if find_tool("pnnx") is None:
        pytest.skip("pnnx not installed")
    from edgeface.export import load_source
    from edgeface.export.converters import ncnn_fp32

    src = load_source(str(model_files["pt2"]))
    (tmp_path / "o").mkdir()
    with pytest.raises(ValueError, match=r"ncnn cannot run this network: pnnx left \d+ op\(s\) with no ncnn layer, first (Tensor|torch)\.\w+"):
        ncnn_fp32(src, tmp_path / "o", None)
    assert not (tmp_path / "o" / "model.ncnn.param").exists()


def test_tflite_from_a_bare_onnx_without_onnx2tf_is_one_line_before_any_work(model_files, tmp_path, capsys, monkeypatch):
    from edgeface.cli import main
    from edgeface.export import onnx2tf_path

    monkeypatch.setattr(onnx2tf_path, "available", lambda: False)
    assert main(["export", str(model_files["onnx"]), "--target", "tflite", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs onnx2tf" in err and "litert-torch" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_parity_failure_bisection_names_the_first_diverging_op(model_files):
    """An engine whose softmax runs over the wrong axis (the kind of conversion bug that gave
    EdgeFace-XXS's ncnn bundle cosine 0.195) is pinned to that op by bisection; with MNN itself,
    which converts this graph correctly, nothing is blamed."""
    onnx = pytest.importorskip("onnx")
    from edgeface.core.ort_session import onnxruntime_session
    from edgeface.export.diagnose import cut_points, describe, first_diverging_op

    path = model_files["onnx"]
    model = onnx.load(str(path))
    softmax = next(n.name for n in model.graph.node if n.op_type == "Softmax")

    def wrong_softmax_engine(cut, x):
        m = onnx.load(str(cut))
        for n in m.graph.node:
            if n.name == softmax:
                del n.attribute[:]
                n.attribute.append(onnx.helper.make_attribute("axis", 1))
        s = onnxruntime_session(m.SerializeToString())
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    x = np.random.default_rng(0).normal(0, 0.5, (2, 3, 112, 112)).astype(np.float32)
    res = first_diverging_op(path, wrong_softmax_engine, x)
    points = cut_points(model)
    assert res["op"] == softmax and res["type"] == "Softmax" and res["cosine_min"] < 0.999, res
    assert res["cuts_tried"] <= int(np.ceil(np.log2(len(points)))) + 2 < len(points)  # bisection, not a walk
    assert "first diverging op is Softmax" in describe(res, "ncnn")
    pytest.importorskip("MNN")
    from edgeface.export.converters import _run_cut_mnn

    assert first_diverging_op(path, _run_cut_mnn, x) is None


def test_pt2e_int8_of_a_layernorm_network_keeps_the_first_conv_float_without_crashing(user_model, model_files):
    """PT2E (tflite-int8's quantizer) on a ConvNeXt/EdgeFace-style module: the permute before its
    channels-last LayerNorm shares the float first conv's quantization; prepare_pt2e failed with
    KeyError: conv2d until those shares went float with it."""
    pytest.importorskip("litert_torch")
    from edgeface.compress.pt2e import pt2e_int8
    from edgeface.models.graph import FaceEmbeddingGraph
    from edgeface.zoo import load_torch_model

    spec, weights, _ = user_model
    net, card = load_torch_model(spec, weights=str(weights), card=str(model_files["card"]))
    faces = np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    q, _, info = pt2e_int8(net, card, faces, show_progress=False)
    assert info["kept_in_float"][0] == "net.stem" and "net.fc" in info["kept_in_float"]
    assert sum("quantize_per" in str(n.target) for n in q.graph.nodes) > 10  # the inner linears and adds run int8
    x = torch.from_numpy(faces[:4])
    with torch.no_grad():
        cos = torch.sum(q(x) * FaceEmbeddingGraph(net, card)(x), dim=1)
    assert cos.min() > 0.99, cos


def test_core_graph_of_a_bare_onnx_stays_the_bare_network(model_files, tmp_path):
    """The full graph of a bare ONNX is wrapped (uint8 in); its core graph (ncnn, Core ML, --graph core)
    is the network itself, float NCHW, its opset unchanged."""
    pytest.importorskip("onnx")
    from edgeface.export import load_source
    from edgeface.export.converters import core_onnx, onnx_io, onnx_opset

    src = load_source(str(model_files["onnx"]))
    core = core_onnx(src, tmp_path / "core.onnx")
    i, _ = onnx_io(core, src.card)
    assert i["dtype"] == "float32" and i["layout"] == "NCHW" and not i["normalization_in_graph"] and onnx_opset(core) == 17
