"""Bundle format, schema, hash check, runtime backends and the targets table, on a tiny
hand-built ONNX model (fast; no torch, no ../shared)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface import __version__
from edgeface.core import targets
from edgeface.runtime.bundle import BUNDLE_JSON, Bundle, BundleError, load_bundle, validate_meta
from edgeface.runtime.conformance import check_conformance, write_conformance

from tiny_bundle import CARD, D, H, W, make_tiny_bundle, reseal


@pytest.fixture
def tiny_bundle(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return make_tiny_bundle(tmp_path / "bundle")


def test_targets_table_is_consistent():
    from edgeface.runtime.backends import BACKENDS

    keys = [t.key for t in targets.TARGETS]
    assert len(keys) == len(set(keys))
    assert {t.backend for t in targets.TARGETS} == set(BACKENDS)
    assert targets.target("tflite", "int8").layout == "NHWC"
    assert targets.target("onnx", "fp32").dynamic_batch
    assert set(targets.precisions_for("tensorrt")) == {"fp16", "int8"}
    with pytest.raises(ValueError, match="tensorrt-fp32"):
        targets.target("tensorrt", "fp32")
    assert {t.key for t in targets.available_targets("run")} <= set(keys)
    assert "onnx-fp32" in {t.key for t in targets.available_targets("run")}


def test_every_target_has_a_converter():
    pytest.importorskip("torch")
    from edgeface.export.converters import CONVERTERS

    assert {t.converter for t in targets.TARGETS} == set(CONVERTERS)


def test_runtime_imports_no_torch():
    code = ("import sys, edgeface.runtime, edgeface.runtime.bundle, edgeface.runtime.conformance, edgeface.core.targets; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('edgeface.models', 'edgeface.zoo', 'edgeface.export'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in (Path(__file__).parent.parent / "edgeface" / "runtime").glob("*.py"):
        assert "import torch" not in f.read_text(), f


def test_bundle_embeds_unit_vectors_and_thresholds(tiny_bundle, rng):
    b = load_bundle(tiny_bundle)
    faces = rng.integers(0, 256, (5, H, W, 3), dtype=np.uint8)
    e = b.embed(faces)
    assert e.shape == (5, D) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(b.embed(faces[2:3]), e[2:3], atol=1e-6)  # batch-independent
    assert b.thresholds == {"1e-3": 0.5, "1e-4": 0.6}
    assert b.backend == "onnxruntime" and b.card == CARD
    with pytest.raises(ValueError, match=r"\(N, 8, 6, 3\)"):
        b.embed(np.zeros((1, 112, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        b.embed(faces.astype(np.float32))


def test_altered_model_file_is_refused(tiny_bundle):
    model = tiny_bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the weights: still a valid model, but not the exported one
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256.*altered"):
        load_bundle(tiny_bundle)
    load_bundle(tiny_bundle, verify_hash=False)  # explicitly skipping the check still opens it


def test_schema_invalid_json_is_refused(tiny_bundle):
    meta = json.loads((tiny_bundle / BUNDLE_JSON).read_text())
    del meta["thresholds"]
    meta["input"]["layout"] = "HWC"
    reseal(tiny_bundle, meta)
    with pytest.raises(BundleError, match="schema") as exc:
        load_bundle(tiny_bundle)
    assert "thresholds" in str(exc.value) and "HWC" in str(exc.value)


def test_other_major_version_and_failed_bundles_are_refused(tiny_bundle):
    path = tiny_bundle / BUNDLE_JSON
    meta = json.loads(path.read_text())
    major = int(__version__.split(".")[0])
    reseal(tiny_bundle, dict(meta, kit_version=f"{major + 1}.0.0"))
    with pytest.raises(BundleError, match="major version"):
        load_bundle(tiny_bundle)
    reseal(tiny_bundle, dict(meta, status="failed", verification={"failures": ["cosine min 0.5 < 0.999"]}))
    with pytest.raises(BundleError, match="failed verification"):
        load_bundle(tiny_bundle)


def test_schema_requires_mean_std_when_not_in_graph(tiny_bundle):
    meta = json.loads((tiny_bundle / BUNDLE_JSON).read_text())
    validate_meta(meta)
    meta["input"]["normalization_in_graph"] = False
    with pytest.raises(BundleError, match="mean"):
        validate_meta(meta)
    meta["files"] = {"model.onnx": "not-a-hash"}
    with pytest.raises(BundleError):
        validate_meta(meta)


def test_conformance_round_trip_and_tamper(tiny_bundle, rng):
    b = load_bundle(tiny_bundle)
    faces = rng.integers(0, 256, (6, H, W, 3), dtype=np.uint8)
    info = write_conformance(b, faces, ["a", "a", "b", "b", "", ""])
    assert info["faces"] == 6 and info["pairs"] == 15
    exp = json.loads((tiny_bundle / "conformance" / "expected.json").read_text())
    assert exp["pairs"][0]["same_person_label"] is True and exp["pairs"][1]["same_person_label"] is False
    assert np.load(tiny_bundle / "conformance" / "expected_embeddings.npy", allow_pickle=False).shape == (6, D)
    rep = check_conformance(b)
    assert rep["passed"] and rep["cosine_min"] > 0.9999
    # An integration that feeds something else (here: the expected embeddings of other faces) fails.
    exp["embeddings"] = exp["embeddings"][1:] + exp["embeddings"][:1]
    (tiny_bundle / "conformance" / "expected.json").write_text(json.dumps(exp))
    assert not check_conformance(b)["passed"]


def test_bundle_without_in_graph_normalisation_normalises_in_numpy(tiny_bundle, rng):
    """A float-input model (e.g. a user's bare ONNX): Bundle.embed applies the card's mean/std."""
    from edgeface.runtime.backends import make_backend

    b = load_bundle(tiny_bundle)
    faces = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    ref = b.embed(faces)

    class Shifted:  # the same model fed float input: must receive (x - 127.5) / 128, NHWC
        def run(self, x):
            assert x.dtype == np.float32 and x.shape == (3, H, W, 3) and x.min() >= -1.0 and x.max() <= 1.0
            return b.runner.run(np.round(x * 128 + 127.5).astype(np.uint8))

    meta = dict(b.meta, input=dict(b.meta["input"], normalization_in_graph=False, layout="NHWC", dtype="float32", mean=[127.5] * 3, std=[128.0] * 3))
    fb = Bundle(tiny_bundle, meta, CARD, "onnxruntime", Shifted())
    np.testing.assert_allclose(fb.embed(faces), ref, atol=1e-5)
    assert make_backend("onnxruntime", tiny_bundle / "model.onnx").input_dtype == np.uint8


def test_view_plan_points_at_the_model_file(tiny_bundle):
    from edgeface.commands.export import view_plan

    plan = view_plan(str(tiny_bundle), browse=False, port=9999)
    assert plan["file"].endswith("model.onnx") and plan["browse"] is False and plan["url"] == "http://localhost:9999"
    with pytest.raises(FileNotFoundError):
        view_plan(str(tiny_bundle / "nope.onnx"))


def test_export_cli_choices_come_from_the_table():
    from edgeface.cli import build_parser

    p = build_parser()
    args = p.parse_args(["export", "m", "--target", "tflite", "--precision", "int8", "--out", "x"])
    assert args.target == "tflite" and args.precision == "int8"
    with pytest.raises(SystemExit):
        p.parse_args(["export", "m", "--target", "caffe", "--out", "x"])


def test_recipes_fill_unset_flags(tmp_path):
    from edgeface.cli import build_parser
    from edgeface.commands.export import apply_recipe

    p = build_parser()
    args = p.parse_args(["export", "m", "--recipe", "android-tflite-int8", "--out", "x"])
    apply_recipe(args)
    assert (args.target, args.precision, args.n_calib, args.n_verify) == ("tflite", "int8", 300, 200)
    assert (args.quantizer, args.qat, args.qat_faces) == (None, 0, 1000)
    args = p.parse_args(["export", "m", "--recipe", "android-tflite-int8", "--precision", "fp16", "--out", "x"])
    apply_recipe(args)
    assert args.precision == "fp16"
    # the shipped model's int8 recipes carry their quantizer and QAT; flags still win
    args = p.parse_args(["export", "m", "--recipe", "x86-openvino-int8-qat", "--qat-faces", "50", "--out", "x"])
    apply_recipe(args)
    assert (args.target, args.precision, args.quantizer, args.qat, args.qat_faces) == ("openvino", "int8", "pt2e", 1200, 50)
    args = p.parse_args(["export", "m", "--recipe", "android-tflite-int8-qat", "--qat", "0", "--out", "x"])
    apply_recipe(args)
    assert (args.quantizer, args.qat) == ("pt2e", 0)
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "tensorrt"\nprecision = "fp32"\n')
    args = p.parse_args(["export", "m", "--recipe", str(bad), "--out", "x"])
    with pytest.raises(ValueError, match="tensorrt-fp32"):
        apply_recipe(args)
    for recipe in (Path(__file__).parent.parent / "export").glob("*.toml"):
        args = p.parse_args(["export", "m", "--recipe", str(recipe), "--out", "x"])
        apply_recipe(args)
        targets.target(args.target, args.precision)


def test_thresholds_come_from_lfw_cross_identity_impostors_by_brute_force():
    """The bundle's FAR thresholds use every different-identity pair of the pair images:
    checked against a loop over pairs, and the threshold admits at most FAR x N of them."""
    import numpy as np

    from edgeface.export import verify as V

    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = [f"person{k % 13}" for k in range(60)]
    fast = V.cross_identity_scores(e, ids)
    slow = [float(e[i] @ e[j]) for i in range(60) for j in range(i + 1, 60) if ids[i] != ids[j]]
    assert len(fast) == len(slow) == 60 * 59 // 2 - sum(c * (c - 1) // 2 for c in np.unique(ids, return_counts=True)[1])
    np.testing.assert_allclose(np.sort(fast), np.sort(slow), rtol=1e-5, atol=1e-6)
    th = V.calibrate_thresholds(np.array([0.9, 0.5]), fast, fars=("1e-2",))["1e-2"]
    assert np.sum(fast >= th["threshold"]) <= 1e-2 * len(fast)
    assert np.sum(fast >= th["threshold"] - 1e-5) > 1e-2 * len(fast) - 1  # and it is the lowest such threshold


def test_schema_format_and_precision_come_from_the_target_table(tiny_bundle, monkeypatch):
    """The runtime validates `format` / `precision` against the target table; the shipped schema
    file (for tools outside the kit) must list the same values."""
    import dataclasses
    import json as _json
    from importlib import resources

    from edgeface.core import targets
    from edgeface.runtime import bundle as B
    from edgeface.runtime.manifest import validate_schema

    shipped = _json.loads(resources.files("edgeface").joinpath("schemas/bundle.schema.json").read_text())["properties"]
    assert {k: shipped[k]["enum"] for k in ("format", "precision")} == B.table_enums(), "update edgeface/schemas/bundle.schema.json from the target table"
    meta = dict(_json.loads((tiny_bundle / "edgeface.json").read_text()), format="newfmt")
    assert any("'newfmt' is not one of" in e for e in validate_schema(meta, B.load_schema()))
    monkeypatch.setattr(targets, "TARGETS", targets.TARGETS + (dataclasses.replace(targets.TARGETS[0], format="newfmt"),))
    assert not [e for e in validate_schema(meta, B.load_schema()) if "newfmt" in e]  # a new table row is a valid format at once
