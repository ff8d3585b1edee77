"""Mobile engines as export targets (MNN, ncnn, Core ML) and the `core` graph variant.

Fast tests run the MNN and ncnn backends on the tiny linear ONNX model, converted by the real
tools (mnnconvert, pnnx). The slow ones export the REAL reference MobileFaceNet (small face
sets, no LFW except the core-vs-full decisions test on LFW-dev fold 1)."""
from pathlib import Path

import numpy as np
import pytest

from edgeface.core import paths
from edgeface.core import targets
from edgeface.runtime.bundle import BundleError, load_bundle, read_meta

from tiny_models import TINY_CARD, reference_embed, write_tiny_onnx

SMALL = dict(n_calib=64, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False, threads=1)


def _tool(name):
    if targets.find_tool(name) is None:
        pytest.skip(f"{name} not installed (requirements/lock.txt installs it)")


# --------------------------------------------------------------------------- table and backends (fast)


def test_every_new_target_names_a_converter_a_backend_and_a_graph():
    from edgeface.export.converters import CONVERTERS
    from edgeface.runtime.backends import BACKENDS

    keys = {t.key for t in targets.TARGETS}
    assert {"mnn-fp32", "mnn-fp16", "mnn-int8", "ncnn-fp32", "ncnn-fp16", "ncnn-int8", "coreml-fp16", "coreml-int8"} <= keys
    for t in targets.TARGETS:
        assert t.converter in CONVERTERS and t.backend in BACKENDS, t.key
        assert t.graphs and set(t.graphs) <= {"full", "core"}, t.key
    assert targets.target("ncnn", "fp32").graphs == ("core",) and targets.target("mnn", "fp32").graphs[0] == "full"
    assert "core" in targets.target("onnx", "fp32").graphs
    # Core ML runs only on Apple platforms, whatever imports here
    assert not targets.target("coreml", "fp16").can_run() or __import__("sys").platform == "darwin"


def test_a_graph_the_target_cannot_write_is_refused_before_any_work(tmp_path):
    from edgeface.export import ExportOptions, export_bundle

    with pytest.raises(ValueError, match="ncnn-fp32 writes the core graph, not 'full'"):
        export_bundle("no-such-model", "ncnn", "fp32", tmp_path / "b", ExportOptions(graph="full"))
    assert not (tmp_path / "b").exists()


def test_ncnn_int8_names_the_missing_tools(tmp_path):
    """ncnn's int8 needs ncnn2table / ncnn2int8 (C++ tools no PyPI or Debian package ships):
    without them the table says it cannot be exported here and the converter says why."""
    if targets.find_tool("ncnn2table") and targets.find_tool("ncnn2int8"):
        pytest.skip("ncnn's int8 tools are installed here")
    from edgeface.export.converters import ncnn_int8

    assert not targets.target("ncnn", "int8").can_export()
    with pytest.raises(ValueError, match="ncnn int8 needs ncnn's command-line tools .*ncnn2table"):
        ncnn_int8(None, tmp_path, None)


def test_profiles_for_the_mobile_engines_export_what_their_device_runs(tmp_path):
    from edgeface.core.profiles import ProfileError, export_args, load_profile, load_recipe

    assert export_args("android-phone-mnn")[:2] == ("mnn", "int8") and load_profile("android-phone-mnn").device.kind == "adb"
    assert export_args("android-phone-ncnn") == ("ncnn", "fp16", {"graph": "core"})
    iphone = load_profile("iphone-coreml")
    assert (iphone.backend, iphone.recipe.format, iphone.precision) == ("coreml", "coreml", "fp16")
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "ncnn"\nprecision = "fp32"\ngraph = "full"\n')
    with pytest.raises(ProfileError, match="graph 'full': ncnn-fp32 writes the core graph"):
        load_recipe(bad)


def test_mnn_backend_feeds_uint8_nhwc_under_mnns_own_label(tmp_path):
    """mnnconvert labels our uint8 NHWC input NCHW with shape (1, H, W, 3); the backend feeds it
    under that label with the batch's shape (from the card), at batch 1 and batch 3."""
    pytest.importorskip("MNN")
    _tool("mnnconvert")
    from edgeface.export.converters import _run_tool
    from edgeface.runtime.backends import make_backend

    onnx_path = write_tiny_onnx(tmp_path / "tiny.onnx", uint8_input=True)
    _run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(tmp_path / "tiny.mnn")])
    backend = make_backend("mnn", tmp_path / "tiny.mnn", threads=1)
    assert backend.input_dtype == np.uint8
    h, w = TINY_CARD.input_size
    faces = np.random.default_rng(1).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    for batch in (faces[:1], faces):
        out = backend.run(batch)
        assert out.shape == (len(batch), TINY_CARD.embedding_size)
        e = out / np.linalg.norm(out, axis=1, keepdims=True)
        assert np.sum(e * reference_embed(batch), axis=1).min() > 0.99999


def test_mnnconvert_runs_without_mnns_pip_install_and_usage_logger(tmp_path, monkeypatch):
    """PyPI MNN's mnnconvert script runs `pip install -U aliyun-log-python-sdk` (the first pip on
    PATH) when that package is missing, then sends usage logs; that made every conversion wait
    minutes here and changed the system Python. The export calls the converter without it: a pip
    placed first on PATH must never run, and the model must still be written."""
    pytest.importorskip("MNN")
    _tool("mnnconvert")
    from edgeface.export.converters import _run_tool

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "pip-was-called"
    (fake_bin / "pip").write_text(f"#!/bin/sh\necho \"$@\" > {marker}\nexit 1\n")
    (fake_bin / "pip").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{__import__('os').environ['PATH']}")
    onnx_path = write_tiny_onnx(tmp_path / "tiny.onnx", uint8_input=True)
    _run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(tmp_path / "tiny.mnn"), "--bizCode", "edgeface"])
    assert (tmp_path / "tiny.mnn").stat().st_size > 0
    assert not marker.exists(), f"mnnconvert ran pip: {marker.read_text()}"


def test_mnn_backend_at_one_thread_starts_no_thread_pool(tmp_path):
    """A module loaded without our runtime manager (once: the one read for its tensor names) got
    MNN's default runtime, whose 4-thread pool spins on sched_yield for the rest of the process:
    one face took 450-700 ms wall for 35 ms of CPU on the loaded machine (the absurd MNN bench
    rows). At threads=1, loading and running must not add a single thread to the process."""
    pytest.importorskip("MNN")
    _tool("mnnconvert")
    import subprocess
    import sys

    from edgeface.export.converters import _run_tool

    onnx_path = write_tiny_onnx(tmp_path / "tiny.onnx", uint8_input=True)
    _run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(tmp_path / "tiny.mnn")])
    h, w = TINY_CARD.input_size
    script = (
        "import os, numpy as np, MNN\n"
        "from edgeface.runtime.backends import make_backend\n"
        "threads = lambda: len(os.listdir('/proc/self/task'))\n"
        "before = threads()\n"
        f"b = make_backend('mnn', {str(tmp_path / 'tiny.mnn')!r}, threads=1)\n"
        f"for n in (1, 3, 1): b.run(np.zeros((n, {h}, {w}, 3), np.uint8))\n"
        "print(before, threads())\n")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc to count threads in")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    before, after = map(int, run.stdout.split()[-2:])
    assert after == before, f"MNN started {after - before} thread(s) for a 1-thread backend"


def test_ncnn_backend_runs_a_pnnx_model_face_by_face(tmp_path):
    pytest.importorskip("ncnn")
    _tool("pnnx")
    from edgeface.export.converters import _run_tool
    from edgeface.runtime.backends import BackendError, make_backend, ncnn_blob_names

    onnx_path = write_tiny_onnx(tmp_path / "tiny.onnx", uint8_input=False)
    h, w = TINY_CARD.input_size
    _run_tool("pnnx", [onnx_path.name, f"inputshape=[1,3,{h},{w}]", "fp16=0"], cwd=tmp_path)
    param = tmp_path / "tiny.ncnn.param"
    assert ncnn_blob_names(param) == ("in0", "out0")
    backend = make_backend("ncnn", param, threads=1)
    faces = np.random.default_rng(2).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    x = ((faces.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)
    out = backend.run(x)
    e = out / np.linalg.norm(out, axis=1, keepdims=True)
    assert np.sum(e * reference_embed(faces, "NCHW"), axis=1).min() > 0.99999
    (tmp_path / "bad.param").write_text("not a param file\n")
    with pytest.raises(BackendError, match="not an ncnn .param file"):
        ncnn_blob_names(tmp_path / "bad.param")


# --------------------------------------------------------------------------- the real model (slow)


@pytest.fixture(scope="module")
def source(shared):
    pytest.importorskip("onnxruntime")
    from edgeface.export import load_source

    return load_source(str(paths.reference_mobilefacenet()))


@pytest.fixture(scope="module")
def verify_faces(source):
    from edgeface.eval.faces import align_files, default_split

    split = default_split(SMALL["n_calib"], SMALL["n_verify"], 0)
    return align_files(split.verify_files[:16], source.card, show_progress=False).crops


def _export(source, tmp_path, fmt, precision, graph=None):
    from edgeface.export import ExportOptions, export_bundle

    out = tmp_path / f"{fmt}-{precision}-{graph or 'default'}"
    return out, export_bundle("", fmt, precision, out, ExportOptions(**SMALL, graph=graph), src=source)


def _assert_core_contract(meta, card):
    h, w = card.input_size
    assert meta["export"]["graph"] == "core"
    assert meta["input"]["dtype"] == "float32" and meta["input"]["layout"] == "NCHW" and meta["input"]["shape"][1:] == [3, h, w]
    assert meta["input"]["normalization_in_graph"] is False and meta["input"]["mean"] == list(card.mean) and meta["input"]["std"] == list(card.std)
    assert meta["output"]["l2_normalized_in_graph"] is False


def _assert_runs_like_source(out, source, faces, min_cos=0.999):
    from edgeface.models.embedder import TorchEmbedder
    from edgeface.runtime.conformance import check_conformance

    b = load_bundle(out, threads=1)
    e = b.embed(faces)
    ref = TorchEmbedder(source.net, source.card, device="cpu").embed(faces)
    assert np.sum(e * ref, axis=1).min() >= min_cos
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert check_conformance(b)["passed"]
    return b


@pytest.mark.shared
@pytest.mark.slow
def test_core_graph_makes_the_full_graphs_decisions_on_lfw_dev_fold_1(source, tmp_path):
    """The core ONNX (bare network, normalisation and L2 norm by the runtime from the card)
    scores every pair of LFW-dev fold 1 like the full graph and decides every pair the same at
    each calibrated threshold and at the fold's own best threshold."""
    from edgeface.eval import benchmarks
    from edgeface.export import verify as V
    from edgeface.core.landmarks import LandmarkStore

    full_dir, full = _export(source, tmp_path, "onnx", "fp32")
    core_dir, core = _export(source, tmp_path, "onnx", "fp32", "core")
    assert full["status"] == core["status"] == "verified"
    _assert_core_contract(core, source.card)
    import onnx

    assert onnx.load(str(core_dir / "model.onnx")).opset_import[0].version == 11
    pairs = benchmarks.get("lfw-dev").pairs(1)
    assert len(pairs) == 600 and {p.fold for p in pairs} == {0}
    store = LandmarkStore.default()
    full_res, core_res = (V.benchmark_scores(load_bundle(d, threads=1), "lfw-dev", store, show_progress=False, pairs=pairs, impostors=False)
                          for d in (full_dir, core_dir))
    rep_f, s_f, lab_f = full_res["report"], full_res["scores"], full_res["same"]
    rep_c, s_c, lab_c = core_res["report"], core_res["scores"], core_res["same"]
    assert len(s_f) == len(s_c) >= 590 and np.array_equal(lab_f, lab_c)
    assert np.abs(s_f - s_c).max() < 1e-5
    u = np.unique(s_f)
    best = max((u[:-1] + u[1:]) / 2, key=lambda t: np.mean((s_f >= t) == lab_f))  # between two scores, not on one
    for t in [best] + [v["threshold"] for v in full["thresholds"]["at_far"].values()]:
        assert np.array_equal(s_f >= t, s_c >= t), t
    # k-fold accuracy picks its thresholds on the scores themselves: equal up to one pair on a threshold
    assert abs(rep_f["accuracy_mean"] - rep_c["accuracy_mean"]) <= 1 / len(s_f)


@pytest.mark.shared
@pytest.mark.slow
def test_mnn_round_trip_full_graph(source, verify_faces, tmp_path):
    pytest.importorskip("MNN")
    _tool("mnnconvert")
    out, meta = _export(source, tmp_path, "mnn", "fp32")
    assert meta["status"] == "verified" and meta["parity"]["cosine_min"] >= 0.999 and meta["parity"]["runtime"] == "mnn"
    on_disk = read_meta(out)
    h, w = source.card.input_size
    assert on_disk["format"] == "mnn" and set(on_disk["files"]) == {"model.mnn"} and on_disk["export"]["graph"] == "full"
    assert on_disk["input"]["dtype"] == "uint8" and on_disk["input"]["shape"] == [None, h, w, 3] and on_disk["input"]["normalization_in_graph"]
    assert f"[1, {h}, {w}, 3]" in on_disk["input"]["note"]  # the feed quirk, told to app developers
    b = _assert_runs_like_source(out, source, verify_faces)
    assert b.backend == "mnn"


@pytest.mark.shared
@pytest.mark.slow
def test_ncnn_round_trip_core_graph(source, verify_faces, tmp_path):
    pytest.importorskip("ncnn")
    _tool("pnnx")
    out, meta = _export(source, tmp_path, "ncnn", "fp32")
    assert meta["status"] == "verified" and meta["parity"]["cosine_min"] >= 0.999 and meta["parity"]["runtime"] == "ncnn"
    assert set(meta["files"]) == {"model.ncnn.param", "model.ncnn.bin"} and meta["model_file"] == "model.ncnn.param"
    _assert_core_contract(meta, source.card)
    assert meta["input"]["name"] == "in0" and meta["output"]["name"] == "out0"
    b = _assert_runs_like_source(out, source, verify_faces)
    assert b.backend == "ncnn"


@pytest.mark.shared
@pytest.mark.slow
def test_coreml_package_spec_and_not_verified_bundle(source, tmp_path):
    ct = pytest.importorskip("coremltools")
    out, meta = _export(source, tmp_path, "coreml", "fp16")
    assert meta["status"] == "not-verified" and "macOS/iOS" in meta["verification"]["reason"]
    assert meta["conformance"]["faces"] == 8 and (out / "conformance" / "expected.json").is_file()
    assert meta["parity"]["measured_on"] == "core_reference.onnx" and meta["parity"]["cosine_min"] >= 0.999
    _assert_core_contract(meta, source.card)
    assert any(f.startswith("model.mlpackage/") for f in meta["files"])
    from coremltools.proto import FeatureTypes_pb2

    spec = ct.models.MLModel(str(out / "model.mlpackage"), skip_model_load=True).get_spec()  # no Core ML needed to read it
    h, w = source.card.input_size
    (inp,), (outp,) = spec.description.input, spec.description.output
    FT = FeatureTypes_pb2.ArrayFeatureType
    assert inp.name == meta["input"]["name"] == "faces" and list(inp.type.multiArrayType.shape) == [1, 3, h, w]
    assert inp.type.multiArrayType.dataType == FT.FLOAT32
    assert outp.name == meta["output"]["name"] == "embedding" and list(outp.type.multiArrayType.shape) == [1, source.card.embedding_size]
    assert outp.type.multiArrayType.dataType == FT.FLOAT32
    assert spec.WhichOneof("Type") == "mlProgram"
    with pytest.raises(BundleError, match="not run at export"):
        load_bundle(out)


def test_core_graph_keeps_the_unslimmed_export_when_onnxslim_changes_the_function(tmp_path):
    """onnxslim changed dlib_resnet's core graph (cosine 0.45-0.52 to the torch net); the check
    that guards it must accept an identical graph and refuse one that computes something else."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from edgeface.export.converters import _same_function

    raw = write_tiny_onnx(tmp_path / "tiny.onnx", uint8_input=False)
    same = onnx.load(str(raw))
    assert _same_function(raw, same, TINY_CARD)
    changed = onnx.load(str(raw))
    init = max(changed.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    w = numpy_helper.to_array(init).copy()
    w.reshape(-1)[: w.size // 2] *= -1.0
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    assert not _same_function(raw, changed, TINY_CARD)
