"""Round trips through every format available here on the REAL reference MobileFaceNet
(randomly initialised nets say nothing about quantisation), with small face sets and no
LFW (the full measurement is benchmarks/export_matrix.py)."""
import dataclasses
import json

import numpy as np
import pytest

from edgeface.core import paths
from edgeface.runtime.bundle import BUNDLE_JSON, BundleError, load_bundle, read_meta

pytestmark = [pytest.mark.shared, pytest.mark.slow]
SMALL = dict(n_calib=64, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False)


@pytest.fixture(scope="module")
def source(shared):
    pytest.importorskip("onnxruntime")
    from edgeface.export import load_source

    return load_source(str(paths.reference_mobilefacenet()))


@pytest.fixture(scope="module")
def onnx_bundle(source, tmp_path_factory):
    from edgeface.export import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("onnx") / "bundle"
    # with the detector shipped inside (issue 20): every test below also checks that the extra hashed files break nothing
    meta = export_bundle("", "onnx", "fp32", out, ExportOptions(**SMALL, detector=str(paths.yunet_model())), src=source)
    return out, meta


@pytest.fixture(scope="module")
def verify_faces(source):
    from edgeface.eval.faces import align_files, default_split

    split = default_split(SMALL["n_calib"], SMALL["n_verify"], 0)
    return align_files(split.verify_files[:16], source.card, show_progress=False).crops


def _check_round_trip(out, meta, source, faces, fmt, min_cos=0.999):
    from edgeface.models.embedder import TorchEmbedder

    assert meta["status"] == "verified", meta.get("verification")
    assert meta["parity"]["cosine_min"] >= min_cos and meta["parity"]["num_faces"] >= 30
    on_disk = read_meta(out)  # schema-validated
    assert on_disk["files"] and on_disk["card"]["name"] == source.card.name and on_disk["format"] == fmt
    assert on_disk["thresholds"]["at_far"]["1e-4"]["threshold"] > on_disk["thresholds"]["at_far"]["1e-3"]["threshold"] > 0
    b = load_bundle(out)
    e = b.embed(faces)
    ref = TorchEmbedder(source.net, source.card, device="cpu").embed(faces)
    cos = np.sum(e * ref, axis=1)
    assert cos.min() >= min_cos, cos
    from edgeface.runtime.conformance import check_conformance

    assert check_conformance(b)["passed"]
    return b


def test_onnx_round_trip(onnx_bundle, source, verify_faces):
    out, meta = onnx_bundle
    b = _check_round_trip(out, meta, source, verify_faces, "onnx")
    assert meta["input"] == {**meta["input"], "dtype": "uint8", "layout": "NHWC", "normalization_in_graph": True}
    assert meta["input"]["shape"][0] is None  # dynamic batch
    import onnx

    m = onnx.load(str(out / "model.onnx"))
    assert m.opset_import[0].version >= 17
    assert any(p.key == "edgeface_card" for p in m.metadata_props)
    assert b.embed(verify_faces[:3]).shape == (3, 128)


def test_quality_gate_calibrated_on_the_exported_models_own_flip_similarity(onnx_bundle, source):
    from edgeface.export import ExportOptions
    from edgeface.export.bundle_writer import _faces
    from edgeface.runtime.face import FaceRecognizer
    from edgeface.runtime.quality import DEFAULT_THRESHOLDS, FLIP_PERCENTILES, flip_similarity

    out, meta = onnx_bundle
    b = load_bundle(out)
    calib = _faces(source.card, ExportOptions(**SMALL))[0]  # the export's own calibration faces
    assert len(calib) >= 50
    fs, _ = flip_similarity(b, calib.crops)
    for mode, p in FLIP_PERCENTILES.items():
        t = b.quality[mode]["min_flip_similarity"]
        assert t == pytest.approx(np.percentile(fs, p), abs=2e-4)
        assert t != DEFAULT_THRESHOLDS[mode]["min_flip_similarity"]
    assert b.quality["enroll"]["min_flip_similarity"] > b.quality["verify"]["min_flip_similarity"]
    assert "calibration faces" in b.quality["notes"]
    # the runtime applies exactly what the bundle says
    gate = FaceRecognizer(b).gate
    assert gate.thresholds["verify"]["min_flip_similarity"] == b.quality["verify"]["min_flip_similarity"]
    # landmark geometry: the rule applied to the detector's landmarks on the same calibration faces
    from edgeface.core.align import landmark_residual, template_landmarks
    from edgeface.runtime.quality import LANDMARK_PERCENTILES

    res = [landmark_residual(lm, template_landmarks(source.card.template, source.card.input_size)) for lm in calib.landmarks]
    for mode, (p, f) in LANDMARK_PERCENTILES.items():
        assert b.quality[mode]["max_landmark_residual"] == pytest.approx(f * np.percentile(res, p), abs=1e-4)
        assert gate.thresholds[mode]["max_landmark_residual"] == b.quality[mode]["max_landmark_residual"]
    assert "max_landmark_residual" in b.quality["notes"]


def test_export_ships_the_detector_and_the_runtime_uses_it(onnx_bundle):
    from edgeface.runtime.bundle import file_sha256
    from edgeface.runtime.face import FaceRecognizer

    out, meta = onnx_bundle
    det = meta["detector"]
    assert det["kind"] == "yunet" and det["licence"] == "Apache-2.0"
    assert meta["files"][det["file"]] == file_sha256(paths.yunet_model()) and (out / det["licence_file"]).is_file()
    rec = FaceRecognizer.from_bundle(out)
    assert rec.detector is not None and rec.detector.model_path == str(out / det["file"])


def test_bundle_carries_thresholds_for_each_hamming_codec(onnx_bundle, source, tmp_path):
    from edgeface.export import ExportOptions
    from edgeface.export import verify as V
    from edgeface.export.bundle_writer import _faces
    from edgeface.runtime.codecs import HAMMING_CODECS, get_codec
    from edgeface.runtime.face import FaceRecognizer

    out, meta = onnx_bundle
    b = load_bundle(out)
    assert set(meta["thresholds"]["codecs"]) == set(HAMMING_CODECS)
    impostors = _faces(source.card, ExportOptions(**SMALL))[3]  # LFW skipped: AAF-8k impostor pairs
    emb = b.embed(impostors.crops)
    for name in HAMMING_CODECS:
        t = b.codec_thresholds(name)
        assert t["1e-4"] > t["1e-3"]
        # recomputed from the definition: all AAF pairs scored by the codec's Hamming similarity
        c = get_codec(name, emb.shape[1])
        codes = c.encode(emb)
        ia, ib = np.triu_indices(len(codes), 1)
        expected = V.calibrate_thresholds(np.zeros(0), c.code_similarity(codes[ia], codes[ib]))
        assert t == pytest.approx({k: v["threshold"] for k, v in expected.items()}, abs=2e-6)
    assert b.codec_thresholds("int8") == b.thresholds  # cosine-scored codecs share the cosine thresholds
    rec = FaceRecognizer(b, gallery=tmp_path / "g.db", codec="binary512")  # no thresholds= needed
    assert rec.threshold("1e-3") == b.codec_thresholds("binary512")["1e-3"] != b.thresholds["1e-3"]


def test_lfw_calibration_scores_each_hamming_codec_on_the_same_pairs(onnx_bundle):
    """The LFW-dev path of threshold calibration (skipped by the small exports above), on fold 1:
    each codec's genuine and impostor scores are its Hamming similarities of the same pairs."""
    from edgeface.eval.faces import aligned_crops, detect_all
    from edgeface.eval import benchmarks
    from edgeface.export import verify as V
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.runtime.codecs import HAMMING_CODECS, get_codec

    out, _ = onnx_bundle
    b = load_bundle(out)
    pairs = benchmarks.get("lfw-dev").pairs(1)
    store = LandmarkStore.default()
    res = V.benchmark_scores(b, "lfw-dev", store, show_progress=False, codecs=HAMMING_CODECS, pairs=pairs)
    rep, labels, cross, by_codec = res["report"], res["same"], res["impostor"], res["codecs"]
    assert set(by_codec) == set(HAMMING_CODECS) and rep["num_pairs"] == len(pairs)
    files = sorted({str(p.a) for p in pairs} | {str(p.b) for p in pairs})
    crops, ok = aligned_crops(files, detect_all(files, store, False), b.card, "fallback", False)
    emb = dict(zip(files, b.embed(crops)))
    usable = [p for p in pairs if ok[files.index(str(p.a))] and ok[files.index(str(p.b))]]
    assert len(usable) == len(labels) and len(res["genuine"]) == int(labels.sum())
    for name in HAMMING_CODECS:
        genuine, impostor = by_codec[name]
        c = get_codec(name, b.card.embedding_size)
        direct = [float(c.similarity(emb[str(p.a)], c.encode(emb[str(p.b)][None]))[0, 0]) for p in usable if p.same]
        assert np.allclose(genuine, direct, atol=1e-5)
        assert len(impostor) == len(cross) and -1 <= impostor.min() and impostor.max() <= 1
        assert np.mean(genuine) > np.mean(impostor) + 0.2  # the codec still separates people


def test_onnx_file_as_model_to_openvino(onnx_bundle, source, verify_faces, tmp_path):
    """A model that arrives as ONNX (card read from its metadata) exports to OpenVINO IR."""
    pytest.importorskip("openvino")
    from edgeface.export import ExportOptions, export_bundle, load_source

    onnx_src = load_source(str(onnx_bundle[0] / "model.onnx"))
    assert onnx_src.kind == "onnx" and onnx_src.card == source.card
    meta = export_bundle("", "openvino", "fp32", tmp_path / "ov", ExportOptions(**SMALL), src=onnx_src)
    assert set(meta["files"]) == {"model.xml", "model.bin"}
    _check_round_trip(tmp_path / "ov", meta, source, verify_faces, "openvino")


def test_ort_format_round_trip(source, verify_faces, tmp_path):
    """ort-fp32: the onnx graph in ONNX Runtime's ORT format (mobile builds), verified like every target."""
    from edgeface.export import ExportOptions, export_bundle

    meta = export_bundle("", "ort", "fp32", tmp_path / "ort", ExportOptions(**SMALL), src=source)
    assert set(meta["files"]) == {"model.ort"} and (tmp_path / "ort" / "model.ort").read_bytes()[4:8] == b"ORTM"
    _check_round_trip(tmp_path / "ort", meta, source, verify_faces, "ort")


def test_tflite_round_trip(source, verify_faces, tmp_path):
    pytest.importorskip("litert_torch")
    from edgeface.export import ExportOptions, export_bundle

    meta = export_bundle("", "tflite", "fp32", tmp_path / "tfl", ExportOptions(**SMALL), src=source)
    assert meta["input"]["shape"] == [1, 112, 96, 3] and meta["input"]["layout"] == "NHWC"
    _check_round_trip(tmp_path / "tfl", meta, source, verify_faces, "tflite")


@pytest.fixture(scope="module")
def bare_onnx(source, tmp_path_factory):
    """The network alone as a float NCHW ONNX (TorchScript exporter, opset 17): what a user brings
    when there is no PyTorch source, e.g. InsightFace's models. Card beside it as JSON."""
    from edgeface.compress.evalfast import export_onnx

    d = tmp_path_factory.mktemp("bare")
    export_onnx(source.net, source.card, d / "net.onnx", opset=17)
    (d / "card.json").write_text(source.card.to_json())
    return d / "net.onnx", d / "card.json"


def test_onnx_only_model_refused_where_no_path(bare_onnx, onnx_bundle, tmp_path):
    """Targets with no ONNX route (onnx fp16) and onnx2tf on our uint8 graph fail with a reason."""
    from edgeface.export import ExportOptions, export_bundle, load_source
    from edgeface.export.onnx2tf_path import _check_float_nchw
    from edgeface.export.converters import onnx_io

    src = load_source(str(bare_onnx[0]), str(bare_onnx[1]))
    with pytest.raises(ValueError, match="PyTorch model only.*tflite-fp32"):
        export_bundle("", "onnx", "fp16", tmp_path / "x", ExportOptions(**SMALL), src=src)
    assert not (tmp_path / "x").exists()
    ours = onnx_bundle[0] / "model.onnx"
    i, _ = onnx_io(ours, src.card)
    with pytest.raises(ValueError, match="plain float32 NCHW network.*uint8 NHWC"):
        _check_float_nchw(ours, i)
    i, _ = onnx_io(bare_onnx[0], src.card)
    _check_float_nchw(bare_onnx[0], i)  # the bare network is accepted


def test_onnx_only_model_to_tflite_with_onnx2tf(bare_onnx, source, verify_faces, tmp_path):
    """The optional onnx2tf path (extra 'onnx2tf'): fp32 from a bare ONNX verifies to >= 0.999,
    fed normalised float NHWC by the runtime."""
    pytest.importorskip("onnx2tf")
    pytest.importorskip("tensorflow")
    from edgeface.export import ExportOptions, export_bundle, load_source

    src = load_source(str(bare_onnx[0]), str(bare_onnx[1]))
    meta = export_bundle("", "tflite", "fp32", tmp_path / "o2t", ExportOptions(**SMALL), src=src)
    assert meta["export"]["details"]["converter"].startswith("onnx2tf")
    assert meta["input"]["dtype"] == "float32" and not meta["input"]["normalization_in_graph"] and meta["input"]["layout"] == "NHWC"
    _check_round_trip(tmp_path / "o2t", meta, source, verify_faces, "tflite")


def test_tflite_int8_is_integer_and_close(source, verify_faces, tmp_path):
    """PT2E int8 TFLite: inner convolutions run on int8 weights, PReLU stays float, the file is
    under half the fp32 size, and embeddings stay close to the source (48 calibration faces here; the
    tolerance check itself is export_matrix's job on 300 faces)."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("torchao")
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.export import ExportOptions, export_bundle

    meta = export_bundle("", "tflite", "int8", tmp_path / "q", ExportOptions(**SMALL), src=source)
    assert meta["status"] in ("verified", "failed") and meta["parity"]["num_faces"] >= 30
    assert meta["parity"]["cosine_mean"] >= 0.97, meta["parity"]
    assert meta["export"]["details"]["batchnorm_folded"] > 0
    details = Interpreter(model_path=str(tmp_path / "q" / "model.tflite"))._get_ops_details()
    tensors = {t["index"]: t for t in Interpreter(model_path=str(tmp_path / "q" / "model.tflite")).get_tensor_details()}
    convs = [op for op in details if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    weight_types = [tensors[op["inputs"][1]]["dtype"] for op in convs]
    # first conv and the last three layers float (compress.pt2e says why), everything between int8
    assert len(convs) > 5 and all(t == np.int8 for t in weight_types[1:-3]), weight_types
    assert weight_types[0] == np.float32 and weight_types[-1] == np.float32
    assert len(meta["export"]["details"]["kept_in_float"]) == 4 and meta["export"]["details"]["calibration_mirrored"]
    # fp32 is 4.1 MB (1.0 M params); the float ends keep int8 at 1.87 MB, still under half
    assert (tmp_path / "q" / "model.tflite").stat().st_size < 0.5 * 4 * 1.0e6


def test_a_cards_own_float_scope_rules_every_int8_quantizer(source, tmp_path):
    """A card with int8_float_scope (dlib's ResNet ends in one linear, not MobileFaceNet's three
    layers) overrides each quantizer's default: PT2E TFLite keeps only the first conv float, and
    OpenVINO's NNCF run keeps one layer where its default keeps two."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("torchao")
    pytest.importorskip("openvino")
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.export import ExportOptions, export_bundle

    own = dataclasses.replace(source, card=source.card.replace(int8_float_scope={"first": True, "last": 0}), cache={})
    meta = export_bundle("", "tflite", "int8", tmp_path / "t", ExportOptions(**SMALL), src=own)
    assert len(meta["export"]["details"]["kept_in_float"]) == 1, meta["export"]["details"]["kept_in_float"]
    assert meta["card"]["int8_float_scope"] == {"first": True, "last": 0}
    it = Interpreter(model_path=str(tmp_path / "t" / "model.tflite"))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    convs = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    weight_types = [tensors[op["inputs"][1]]["dtype"] for op in convs]
    assert weight_types[0] == np.float32 and all(t == np.int8 for t in weight_types[1:]), weight_types
    ov = export_bundle("", "openvino", "int8", tmp_path / "o", ExportOptions(**SMALL), src=own)
    assert len(ov["export"]["details"]["kept_in_float"]) == 1, ov["export"]["details"]["kept_in_float"]


def test_onnx_int8_within_int8_tolerance(onnx_bundle, tmp_path):
    """NNCF int8 from the ONNX graph with 48 calibration faces meets mean >= 0.99, min >= 0.97."""
    pytest.importorskip("nncf")
    from edgeface.export import ExportOptions, export_bundle, load_source

    from edgeface.export.bundle_writer import plan_export

    with pytest.raises(ValueError, match="--quantizer pt2e quantizes the PyTorch network; from an ONNX file openvino-int8 quantizes with nncf"):
        plan_export("", "openvino", "int8", tmp_path / "x", ExportOptions(**SMALL, quantizer="pt2e"), src=load_source(str(onnx_bundle[0] / "model.onnx")))
    meta = export_bundle("", "onnx", "int8", tmp_path / "q", ExportOptions(**SMALL), src=load_source(str(onnx_bundle[0] / "model.onnx")))
    assert meta["status"] == "verified", meta["verification"]
    assert meta["parity"]["cosine_mean"] >= 0.99 and meta["parity"]["cosine_min"] >= 0.97
    # The L2 normalisation stays float: raw outputs are unit vectors (NNCF once quantized it).
    assert abs(meta["parity"]["output_norm_min"] - 1) < 1e-3 and abs(meta["parity"]["output_norm_max"] - 1) < 1e-3
    # Compacted storage (float head weight-only int8, float params fp16): the 3.5x.
    assert (tmp_path / "q" / "model.onnx").stat().st_size * 3.5 < (onnx_bundle[0] / "model.onnx").stat().st_size
    assert meta["export"]["details"]["storage"]["weight_only_int8"] and meta["export"]["details"]["storage"]["float_params_stored_fp16"] > 30
    assert meta["export"]["calibration"]["faces"] >= 40


def test_qat_export_is_a_verified_bundle_trained_on_faces_it_is_not_checked_on(source, tmp_path):
    """--qat: onnx-int8 by quantization-aware training goes through the same stages as every
    export (parity, thresholds, conformance, seal) and its training faces are none of the
    calibration or verification photos."""
    pytest.importorskip("nncf")
    import onnx

    from edgeface.export import ExportOptions, export_bundle
    from edgeface.export.bundle_writer import _faces, plan_export, qat_training_faces

    opts = ExportOptions(**SMALL, qat_steps=3, qat_faces=48)
    with pytest.raises(ValueError, match="onnx-int8, openvino-int8, tflite-int8 only, not onnx-fp16"):
        plan_export("", "onnx", "fp16", tmp_path / "x", opts, src=source)
    with pytest.raises(ValueError, match="tflite-int8 quantizes with pt2e"):
        plan_export("", "tflite", "int8", tmp_path / "x", ExportOptions(**SMALL, quantizer="nncf"), src=source)
    with pytest.raises(ValueError, match="onnx-fp32 is not quantized here"):
        plan_export("", "onnx", "fp32", tmp_path / "x", ExportOptions(**SMALL, quantizer="pt2e"), src=source)
    calib, _, verify, _ = _faces(source.card, opts)
    train = qat_training_faces(source.card, opts, set(calib.paths) | set(verify.paths))
    assert len(train) >= 40
    flat = lambda a: {x.tobytes() for x in a}  # noqa: E731 - no training crop is a calibration or verification crop
    assert not flat(train) & (flat(calib.crops) | flat(verify.crops))
    meta = export_bundle("", "onnx", "int8", tmp_path / "qat", opts, src=source)
    assert meta["status"] == "verified", meta["verification"]
    assert meta["export"]["converter"] == "onnx_int8_qat" and meta["export"]["details"]["qat"]["steps"] == 3
    assert meta["parity"]["cosine_mean"] >= 0.99 and meta["parity"]["cosine_min"] >= 0.97
    m = onnx.load(str(tmp_path / "qat" / "model.onnx"))
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in m.graph.initializer) >= 40  # weights stored int8
    from edgeface.runtime.conformance import check_conformance

    assert check_conformance(load_bundle(tmp_path / "qat"))["passed"]


@pytest.mark.parametrize("target", ["openvino", "tflite"])
def test_qat_reaches_openvino_and_tflite_int8(source, tmp_path, target):
    """--qat on the other int8 targets: OpenVINO IR from the NNCF QAT network's Q/DQ graph, TFLite
    from a PT2E fake-quantized graph trained the same way; each a verified bundle whose record
    names the QAT converter and its steps, and whose layers run int8."""
    pytest.importorskip("nncf" if target == "openvino" else "litert_torch")
    from edgeface.export import ExportOptions, export_bundle
    from edgeface.runtime.conformance import check_conformance

    meta = export_bundle("", target, "int8", tmp_path / target, ExportOptions(**SMALL, qat_steps=3, qat_faces=48), src=source)
    assert meta["export"]["converter"] == f"{target}_int8_qat" and meta["export"]["details"]["qat"]["steps"] == 3
    if target == "tflite":
        # 64 calibration faces and 3 steps: near PTQ's own 0.99 mean on this model (test_tflite_int8_is_integer_and_close)
        assert meta["status"] in ("verified", "failed") and meta["parity"]["cosine_mean"] >= 0.97, meta["parity"]
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(tmp_path / target / "model.tflite"))
        types = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
        convs = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        assert sum(types[op["inputs"][1]] == np.int8 for op in convs) > 5
        # The L2 normalisation stays float: unit vectors out (PT2E once quantized its x*x: 1.0009 long)
        assert abs(meta["parity"]["output_norm_min"] - 1) < 1e-4 and abs(meta["parity"]["output_norm_max"] - 1) < 1e-4
    else:
        assert meta["status"] == "verified", meta["verification"]
        assert meta["parity"]["cosine_mean"] >= 0.99 and meta["parity"]["cosine_min"] >= 0.97
        import openvino as ov

        ops = ov.Core().read_model(str(tmp_path / target / "model.xml")).get_ordered_ops()
        assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 5
        assert any(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8 for op in ops)
        assert check_conformance(load_bundle(tmp_path / target))["passed"]


def test_openvino_int8_through_pt2e_runs_the_tflite_network_at_any_batch(source, tmp_path):
    """--quantizer pt2e on openvino-int8: the PT2E network tflite-int8 ships, read by OpenVINO's
    TFLite frontend with its batch freed. Its convolutions run int8, its embeddings are the TFLite
    file's (same calibration, same network), a batch of four equals four single faces, and its
    output is unit length (the L2 normalisation stays float)."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("openvino")
    import openvino as ov

    from edgeface.export import ExportOptions, export_bundle
    from edgeface.runtime.backends import LiteRTBackend, OpenVINOBackend

    meta = export_bundle("", "openvino", "int8", tmp_path / "ov", ExportOptions(**SMALL, quantizer="pt2e"), src=source)
    # 64 calibration faces on this small model: near PTQ's own 0.99 mean (test_tflite_int8_is_integer_and_close)
    assert meta["status"] in ("verified", "failed") and meta["parity"]["cosine_mean"] >= 0.97, meta["parity"]
    assert meta["export"]["converter"] == "openvino_int8_pt2e" and meta["input"]["shape"][0] is None
    assert abs(meta["parity"]["output_norm_min"] - 1) < 1e-4 and abs(meta["parity"]["output_norm_max"] - 1) < 1e-4
    lite_meta = export_bundle("", "tflite", "int8", tmp_path / "lite", ExportOptions(**SMALL), src=source)
    h, w = source.card.input_size
    faces = np.random.default_rng(3).integers(0, 256, (4, h, w, 3), dtype=np.uint8)
    vino = OpenVINOBackend().load(tmp_path / "ov" / "model.xml", threads=1)
    batch = vino.run(faces)
    singles = np.concatenate([vino.run(faces[k : k + 1]) for k in range(4)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    lite = LiteRTBackend().load(tmp_path / "lite" / "model.tflite", threads=1)
    by_lite = np.concatenate([lite.run(faces[k : k + 1]) for k in range(4)])
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    # one network in two int8 runtimes: their rounding differs a little, far less than int8 vs float
    agree = (unit(batch) * unit(by_lite)).sum(1)
    assert 1 - agree.min() < (1 - lite_meta["parity"]["cosine_min"]) / 3 and 1 - agree.mean() < (1 - lite_meta["parity"]["cosine_mean"]) / 3, \
        (agree, lite_meta["parity"])
    runtime = ov.Core().compile_model(str(tmp_path / "ov" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).get_runtime_model()
    convs = [op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops() if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    assert sum(p in ("u8", "i8") for p in convs) > len(convs) // 2, convs


def test_pt2e_qat_trains_the_weights_and_keeps_the_calibrated_activation_ranges(source):
    """PT2E QAT starts from PTQ's own histogram calibration (the same activation scales), then
    freezes those ranges and trains the weights: two runs that train differently end with PTQ's
    activation scales and with different embeddings, both different from PTQ's. PTQ's ranges are
    measured sequentially (behind the fake-quantized earlier layers): the float model's own ranges,
    sequential_calibration=False, differ after the first quantized layer."""
    pytest.importorskip("litert_torch")
    import torch

    from edgeface.compress.pt2e import pt2e_int8

    h, w = source.card.input_size
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (24, h, w, 3), dtype=np.uint8)
    ptq, _, _ = pt2e_int8(source.net, source.card, faces[:8], batch=8)
    runs = [pt2e_int8(source.net, source.card, faces[:8], batch=8, train_faces=faces[8:], steps=4, lr=lr, show_progress=False) for lr in (1e-3, 1e-2)]

    def activation_scales(m):
        return np.array([float(n.args[1]) for n in m.graph.nodes
                         if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and not isinstance(n.args[1], torch.fx.Node)])

    (slow, _, info), (fast, _, _) = runs
    assert info["qat"]["steps"] == 4 and info["qat"]["parameters_trained"] > 0
    base = activation_scales(ptq)
    assert len(base) > 5 and len(activation_scales(slow)) == len(base)
    np.testing.assert_allclose(activation_scales(slow), base, rtol=1e-6)
    np.testing.assert_array_equal(activation_scales(slow), activation_scales(fast))  # frozen while training
    plain = activation_scales(pt2e_int8(source.net, source.card, faces[:8], batch=8, sequential_calibration=False)[0])
    assert len(plain) == len(base) and plain[0] == base[0] and not np.allclose(plain, base, rtol=1e-3)
    x = torch.from_numpy(faces[:4])
    with torch.no_grad():
        assert not torch.allclose(ptq(x), slow(x), atol=1e-4) and not torch.allclose(slow(x), fast(x), atol=1e-4)


def test_export_that_breaks_parity_is_caught(source, tmp_path):
    """A wrong mean inside the graph (0 instead of 127.5) must fail verification loudly."""
    from edgeface.export import ExportOptions, export_bundle

    bad = dataclasses.replace(source, mean=(0.0, 0.0, 0.0), cache={})
    meta = export_bundle("", "onnx", "fp32", tmp_path / "bad", ExportOptions(**SMALL), src=bad)
    assert meta["status"] == "failed"
    assert any("cosine min" in f for f in meta["verification"]["failures"])
    assert json.loads((tmp_path / "bad" / BUNDLE_JSON).read_text())["status"] == "failed"
    with pytest.raises(BundleError, match="failed verification"):
        load_bundle(tmp_path / "bad")
    # the export stopped at that first failed gate: no calibration, no conformance set measured on a wrong model
    assert meta["verification"]["stopped_at"] == "parity" and meta["conformance"] is None
    assert meta["thresholds"]["method"].startswith("not measured") and "num_impostor" not in meta["thresholds"]
    # --keep-going measures the rest anyway (a diagnosis); the bundle stays failed
    meta = export_bundle("", "onnx", "fp32", tmp_path / "bad2", ExportOptions(**SMALL, keep_going=True), src=bad)
    assert meta["status"] == "failed" and "stopped_at" not in meta["verification"]
    assert meta["thresholds"]["num_impostor"] > 0 and meta["conformance"] is not None


def test_verification_levels():
    from edgeface.export import ExportOptions
    from edgeface.export.bundle_writer import verification_options

    full = verification_options(ExportOptions())
    assert full.benchmarks == ("lfw-dev", "cfp-ff", "cfp-fp") and full.n_threshold_faces == 4000
    quick = verification_options(ExportOptions(verify="quick"))
    assert quick.benchmarks == ("lfw-dev",) and quick.n_threshold_faces == 1000 and quick.verify == "quick"
    with pytest.raises(ValueError, match="--verify 'fast'"):
        verification_options(ExportOptions(verify="fast"))


def test_altered_exported_model_is_refused(onnx_bundle, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(onnx_bundle[0], out)
    model = out / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(out)


def test_check_cli_and_tensorrt_ready(onnx_bundle, source, tmp_path, capsys):
    from edgeface.cli import main

    assert main(["export", "--check", str(onnx_bundle[0])]) == 0
    assert "conformance passed" in capsys.readouterr().out
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT installed: the not-built path does not apply")
    except ImportError:
        pass
    from edgeface.export import ExportOptions, export_bundle

    meta = export_bundle("", "tensorrt", "fp16", tmp_path / "trt", ExportOptions(**dict(SMALL, n_impostor=0)), src=source)
    assert meta["status"] == "not-built" and meta["export"]["engine_built"] is False
    assert (tmp_path / "trt" / "tensorrt_build.json").is_file() and not (tmp_path / "trt" / "model.engine").exists()
    assert meta["parity"]["cosine_min"] >= 0.999  # the TensorRT-ready ONNX itself was verified
    with pytest.raises(BundleError, match="not built"):
        load_bundle(tmp_path / "trt")
