"""Issue 20, finding 1: edgeface.json is no longer trusted blindly. Each attack from the issue
(and its near relatives) on a tiny sealed bundle must end in a BundleError whose .kind names
the rule (docs/runtime.md "Bundle refusal rules"); none may load. Fast: no torch, no ../shared."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from edgeface.runtime import manifest as M
from edgeface.runtime.bundle import BUNDLE_JSON, MANIFEST_DIGEST_FILE, BundleError, file_sha256, load_bundle, validate_meta
from tiny_bundle import D, H, W, make_tiny_bundle, read, reseal, tiny_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture
def bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "b")


def refused(path, kind, match=None, **kw):
    with pytest.raises(BundleError) as exc:
        load_bundle(path, **kw)
    assert exc.value.kind == kind, (exc.value.kind, str(exc.value))
    if match:
        assert match in str(exc.value), str(exc.value)
    return str(exc.value)


def test_sealed_bundle_loads_and_digest_is_sha256sum_format(bundle):
    b = load_bundle(bundle)
    assert b.thresholds == {"1e-3": 0.5, "1e-4": 0.6}
    line = (bundle / MANIFEST_DIGEST_FILE).read_text()
    assert line == f"{file_sha256(bundle / BUNDLE_JSON)}  {BUNDLE_JSON}\n"
    assert set(b.meta["conformance"]["files"]) >= {"conformance/expected.json", "conformance/face_00.png"}


def test_manifest_edit_without_resealing_is_refused(bundle):
    meta = read(bundle)
    meta["thresholds"]["at_far"]["1e-3"]["threshold"] = -0.5
    (bundle / BUNDLE_JSON).write_text(json.dumps(meta))
    refused(bundle, M.MANIFEST_DIGEST, "changed after export")
    (bundle / MANIFEST_DIGEST_FILE).unlink()
    refused(bundle, M.MANIFEST_DIGEST, "not sealed")
    (bundle / MANIFEST_DIGEST_FILE).write_text("garbage")
    refused(bundle, M.MANIFEST_DIGEST)


@pytest.mark.parametrize("value", [-0.5, 0.0, 0.1, 1.5, float("nan")])
def test_threshold_outside_its_plausible_range_is_refused_even_resealed(bundle, value):
    meta = read(bundle)
    meta["thresholds"]["at_far"]["1e-3"]["threshold"] = value
    (bundle / BUNDLE_JSON).write_text(json.dumps(meta, allow_nan=True))
    from edgeface.runtime.bundle import write_manifest_digest

    write_manifest_digest(bundle)
    kind = M.SCHEMA if value != value or value > 1 else M.THRESHOLDS  # NaN / > 1 already break the schema
    refused(bundle, kind)


def test_thresholds_must_grow_as_far_shrinks_and_match_the_conformance_record(bundle):
    meta = read(bundle)
    meta["thresholds"]["at_far"]["1e-4"]["threshold"] = 0.45
    reseal(bundle, meta)
    refused(bundle, M.THRESHOLDS, "looser FAR")
    meta["thresholds"]["at_far"]["1e-4"]["threshold"] = 0.6
    meta["thresholds"]["at_far"]["1e-3"]["threshold"] = 0.55  # plausible, but not what was calibrated
    reseal(bundle, meta)
    refused(bundle, M.THRESHOLDS, "recorded with the conformance set")


def test_export_check_compares_live_thresholds_with_the_record(bundle, capsys):
    from edgeface.cli import main
    from edgeface.runtime.conformance import check_conformance

    assert main(["export", "--check", str(bundle)]) == 0
    b = load_bundle(bundle)
    b.meta["thresholds"]["at_far"]["1e-3"]["threshold"] = 0.55
    rep = check_conformance(b)
    assert not rep["passed"] and "1e-3" in rep["threshold_mismatches"][0]


def test_flipped_normalization_flag_is_refused(bundle):
    meta = read(bundle)
    meta["input"]["normalization_in_graph"] = False
    meta["input"]["mean"], meta["input"]["std"] = [127.5] * 3, [128.0] * 3
    reseal(bundle, meta)
    refused(bundle, M.INPUT_CONTRACT, "normalization_in_graph")
    # flag + dtype flipped together: the graph itself still takes uint8
    meta["input"]["dtype"], meta["input"]["value_range"] = "float32", [-1e9, 1e9]
    reseal(bundle, meta)
    refused(bundle, M.INPUT_CONTRACT, "takes uint8 input")


def test_model_file_must_be_a_hashed_file_inside_the_bundle(bundle, tmp_path):
    rng = np.random.default_rng(5)
    tiny_onnx(bundle / "other.onnx", rng.standard_normal((H * W * 3, D)))
    meta = read(bundle)
    reseal(bundle, dict(meta, model_file="other.onnx"))
    refused(bundle, M.MODEL_FILE, "not one of the hashed files")
    outside = tiny_onnx(tmp_path / "outside.onnx", rng.standard_normal((H * W * 3, D)))
    for bad in [str(outside), "../outside.onnx", "sub/../../outside.onnx", "C:\\model.onnx"]:
        reseal(bundle, dict(meta, model_file=bad, files={bad: file_sha256(outside), **meta["files"]}))
        with pytest.raises(BundleError) as exc:
            load_bundle(bundle)
        assert exc.value.kind in (M.SCHEMA, M.MODEL_FILE), (bad, exc.value)
    # a hashed entry that is a symlink to a file outside the bundle
    os.symlink(outside, bundle / "link.onnx")
    reseal(bundle, dict(meta, model_file="link.onnx", files={"link.onnx": file_sha256(outside)}))
    refused(bundle, M.MODEL_FILE, "outside the bundle")


def test_garbage_model_with_matching_hash_is_refused_not_a_traceback(bundle):
    meta = read(bundle)
    (bundle / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    meta["files"]["model.onnx"] = file_sha256(bundle / "model.onnx")
    reseal(bundle, meta)
    refused(bundle, M.MODEL_LOAD, "cannot load this model")


@pytest.mark.parametrize("case", ["nan", "constant", "not_unit", "other_weights", "zero"])
def test_model_that_loads_but_answers_wrongly_is_refused_at_load(bundle, case):
    rng = np.random.default_rng(9)
    w = rng.standard_normal((H * W * 3, D))
    kw = {}
    if case == "nan":  # 0 / 0 in the graph's normalisation
        w, kw = np.zeros_like(w), {}
    elif case == "constant":
        w, kw = np.zeros_like(w), {"bias": rng.standard_normal(D)}
    elif case == "not_unit":
        kw = {"l2": False}
    elif case == "zero":
        w, kw = np.zeros_like(w), {"l2": False}
    tiny_onnx(bundle / "model.onnx", w, **kw)
    meta = read(bundle)
    meta["files"]["model.onnx"] = file_sha256(bundle / "model.onnx")
    reseal(bundle, meta)
    kind = M.CONFORMANCE if case == "other_weights" else M.MODEL_OUTPUT
    msg = refused(bundle, kind)
    assert {"nan": "NaN", "constant": "same embedding", "not_unit": "norms", "zero": "all-zero", "other_weights": "reproduce"}[case] in msg


def test_conformance_files_are_covered(bundle):
    (bundle / "conformance" / "face_00.png").write_bytes((bundle / "conformance" / "face_01.png").read_bytes())
    refused(bundle, M.FILE_HASH, "conformance file")
    shutil.rmtree(bundle / "conformance")
    meta = read(bundle)
    meta["conformance"] = None
    reseal(bundle, meta)
    refused(bundle, M.CONFORMANCE, "conformance set")


@pytest.mark.parametrize("damage", ["ragged", "no_tolerance", "text_tolerance"])
def test_a_damaged_conformance_record_is_refused_not_a_crash(bundle, damage):
    """expected.json re-hashed and re-sealed (so only the self-test can notice): a ragged embedding list or
    a missing / non-numeric tolerance is a conformance refusal, never a KeyError or ValueError traceback."""
    path = bundle / "conformance" / "expected.json"
    exp = json.loads(path.read_text())
    if damage == "ragged":
        exp["embeddings"][0] = exp["embeddings"][0][:-1]
    elif damage == "no_tolerance":
        del exp["tolerance"]
    else:
        exp["tolerance"]["min_cosine_to_expected"] = "high"
    path.write_text(json.dumps(exp))
    meta = read(bundle)
    meta["conformance"]["files"]["conformance/expected.json"] = file_sha256(path)
    reseal(bundle, meta)
    refused(bundle, M.CONFORMANCE)


def test_unreadable_manifests_are_refused_with_a_kind(bundle):
    from edgeface.runtime.bundle import write_manifest_digest

    for raw, kind in [(b"\xff\xfe{", M.MANIFEST_UNREADABLE), (b"{not json", M.MANIFEST_UNREADABLE), (b"[" * 100000 + b"]" * 100000, M.MANIFEST_UNREADABLE),
                      (b"[1, 2]", M.SCHEMA), (b" " * (M.MAX_MANIFEST_BYTES + 1), M.MANIFEST_UNREADABLE)]:
        (bundle / BUNDLE_JSON).write_bytes(raw)
        write_manifest_digest(bundle)
        with pytest.raises(BundleError) as exc:
            load_bundle(bundle)
        assert exc.value.kind == kind, (raw[:20], exc.value)
    with pytest.raises(FileNotFoundError):
        load_bundle(bundle / "nope")


def test_full_validation_without_jsonschema(bundle, monkeypatch):
    """The [runtime] install has no jsonschema: nested types and ranges are still checked."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import jsonschema -> ImportError
    meta = read(bundle)
    bad = [("input", dict(meta["input"], normalization_in_graph="false")), ("card", dict(meta["card"], input_size=[8, "6"])),
           ("thresholds", {"metric": "cosine", "at_far": {"1e-3": {"threshold": "0.5"}, "1e-4": {"threshold": 0.6}}}),
           ("alignment", dict(meta["alignment"], crop_size=[8, 0])), ("embedding_size", True), ("files", {"model.onnx": "abc"})]
    for key, value in bad:
        with pytest.raises(BundleError) as exc:
            validate_meta(dict(meta, **{key: value}))
        assert exc.value.kind == M.SCHEMA, (key, exc.value)
    validate_meta(meta)


def test_builtin_validator_agrees_with_jsonschema(bundle):
    jsonschema = pytest.importorskip("jsonschema")
    from edgeface.runtime.bundle import load_schema

    schema = load_schema()
    meta = read(bundle)
    rng = np.random.default_rng(0)
    values = [None, True, 0, -1, 1.5, "x", "", [], [1, 2], {}, {"threshold": 2}, "a" * 70]
    agree = 0
    for _ in range(300):
        m = json.loads(json.dumps(meta))
        # mutate one random leaf or sub-object
        node, path = m, []
        while isinstance(node, dict) and node and rng.random() < 0.7:
            k = list(node)[rng.integers(len(node))]
            if not isinstance(node[k], (dict, list)) or rng.random() < 0.3:
                break
            path.append(k)
            node = node[k]
        if isinstance(node, dict) and node:
            k = list(node)[rng.integers(len(node))]
            if rng.random() < 0.2:
                del node[k]
            else:
                node[k] = values[rng.integers(len(values))]
        ours = not M.validate_schema(m, schema)
        theirs = jsonschema.Draft202012Validator(schema).is_valid(m)
        assert ours == theirs, (path, m)
        agree += 1
    assert agree == 300


def test_manifest_is_a_typed_value_that_round_trips_and_validates(tmp_path):
    """The typed Manifest (what the writer builds stage by stage) reads every section of a real
    manifest, writes the same JSON document back, cannot be patched, and refuses what load_bundle refuses."""
    import dataclasses

    from edgeface.runtime.bundle import BundleError, Manifest

    meta = read(make_tiny_bundle(tmp_path / "b"))
    m = Manifest.from_dict(meta)
    assert m.to_dict() == meta and list(m.to_dict()) == list(meta)
    assert m.input.shape == tuple(meta["input"]["shape"]) and m.input.get("normalization_in_graph") == meta["input"]["normalization_in_graph"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.status = "verified"
    later = dataclasses.replace(m, status="failed", verification={"failures": ["x"], "passed": False})
    assert later.to_dict()["status"] == "failed" and m.to_dict()["status"] == meta["status"]
    bad = dict(meta, input=dict(meta["input"], normalization_in_graph=not meta["input"]["normalization_in_graph"]))
    with pytest.raises(BundleError) as err:
        Manifest.from_dict(bad)
    with pytest.raises(BundleError) as reader:
        validate_meta(bad)
    assert err.value.kind == reader.value.kind and str(err.value) == str(reader.value)
