"""Bundles every SDK must judge as the Python runtime does: mutated copies of a tiny sealed bundle
(tests/tiny_bundle.py) and Python's verdict on each (`load_bundle` → "ok" or BundleError.kind), plus
a non-face case on the reference bundle (its quality.nonface section and FaceRecognizer.analyze's
decisions on faces and synthetic non-faces).

    write_refusal_cases(out) -> [{"id", "dir", "kind", "http"}]
    write_nonface_case(vectors, out) -> {"bundle", "images": [{"image", "landmarks", "result", "failed", "nonface_margin"}]}

"http": false marks the cases a bundle served over HTTP cannot show (a link leaving the bundle).
Torch-free; the refusal cases need onnx + onnxruntime, no ../shared.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from edgeface.runtime.bundle import BUNDLE_JSON, MANIFEST_DIGEST_FILE, BundleError, file_sha256, load_bundle, write_manifest_digest
from tiny_bundle import D, H, W, make_tiny_bundle, read, reseal, tiny_onnx


def verdict(path: Path) -> str:
    try:
        load_bundle(path)
    except BundleError as exc:
        return exc.kind
    return "ok"


def _edit_meta(**changes):
    def edit(d: Path):
        meta = read(d)
        for key, value in changes.items():
            node = meta
            *parents, last = key.split(".")
            for p in parents:
                node = node[p]
            node[last] = value
        reseal(d, meta)
    return edit


def _write_raw(raw: bytes, seal: bool = True):
    def edit(d: Path):
        (d / BUNDLE_JSON).write_bytes(raw)
        if seal:
            write_manifest_digest(d)
    return edit


def _meta_text(fn):
    """Edit edgeface.json's text (for what json.dumps cannot write: 16.0 for 16, a hash with a newline...)."""
    def edit(d: Path):
        (d / BUNDLE_JSON).write_text(fn((d / BUNDLE_JSON).read_text()))
        write_manifest_digest(d)
    return edit


def _model(kind: str):
    def edit(d: Path):
        rng = np.random.default_rng(9)
        w = rng.standard_normal((H * W * 3, D))
        kw = {"nan": {"weights": np.zeros_like(w)}, "constant": {"weights": np.zeros_like(w), "bias": rng.standard_normal(D)},
              "not_unit": {"weights": w, "l2": False}, "zero": {"weights": np.zeros_like(w), "l2": False}, "other_weights": {"weights": w}}[kind]
        tiny_onnx(d / "model.onnx", **kw)
        meta = read(d)
        meta["files"]["model.onnx"] = file_sha256(d / "model.onnx")
        reseal(d, meta)
    return edit


def _garbage_model(d: Path):
    (d / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    meta = read(d)
    meta["files"]["model.onnx"] = file_sha256(d / "model.onnx")
    reseal(d, meta)


def _link_outside(d: Path):
    outside = d.parent / "outside.onnx"
    shutil.copy(d / "model.onnx", outside)
    os.symlink(outside, d / "link.onnx")
    meta = read(d)
    reseal(d, dict(meta, model_file="link.onnx", files={"link.onnx": file_sha256(outside)}))


def _other_model_file(d: Path):
    tiny_onnx(d / "other.onnx", np.random.default_rng(5).standard_normal((H * W * 3, D)))
    reseal(d, dict(read(d), model_file="other.onnx"))


def _conformance_replaced(d: Path):
    (d / "conformance" / "face_00.png").write_bytes((d / "conformance" / "face_01.png").read_bytes())


def _conformance_removed(d: Path):
    shutil.rmtree(d / "conformance")
    reseal(d, dict(read(d), conformance=None))


def _nonface(d: Path, dims: int = D, limit: float = 0.9, where: str = "quality"):
    p = np.random.default_rng(3).standard_normal(dims)
    section = {"families": ["uniform_noise"], "prototypes": [[round(float(v), 6) for v in p / np.linalg.norm(p)]], "limits": [limit]}
    meta = read(d)
    (meta["quality"] if where == "quality" else meta["quality"].setdefault(where, {}))["nonface"] = section
    reseal(d, meta)


def _detector(hashed: bool = True, **extra):
    def edit(d: Path):
        (d / "detector").mkdir(exist_ok=True)
        (d / "detector" / "yunet.onnx").write_bytes(b"a detector model")
        meta = read(d)
        if hashed:
            meta["files"]["detector/yunet.onnx"] = file_sha256(d / "detector" / "yunet.onnx")
        meta["detector"] = {"file": "detector/yunet.onnx", "kind": "yunet", "licence": "MIT", **extra}
        reseal(d, meta)
    return edit


def _flip_normalization(dtype_too: bool):
    def edit(d: Path):
        meta = read(d)
        meta["input"]["normalization_in_graph"] = False
        meta["input"]["mean"], meta["input"]["std"] = [127.5] * 3, [128.0] * 3
        if dtype_too:
            meta["input"]["dtype"], meta["input"]["value_range"] = "float32", [-1e9, 1e9]
        reseal(d, meta)
    return edit


def _at_far(**entries):
    def edit(d: Path):
        meta = read(d)
        for k, v in entries.items():
            meta["thresholds"]["at_far"][k] = {"threshold": v}
        reseal(d, meta)
    return edit


def _unseal(d: Path):
    meta = read(d)
    meta["thresholds"]["at_far"]["1e-3"]["threshold"] = 0.45
    (d / BUNDLE_JSON).write_text(json.dumps(meta))


# id -> (edit of a fresh copy of the tiny bundle, visible over HTTP)
CASES = {
    "ok": (lambda d: None, True),
    "digest_missing": (lambda d: (d / MANIFEST_DIGEST_FILE).unlink(), True),
    "digest_garbage": (lambda d: (d / MANIFEST_DIGEST_FILE).write_text("garbage"), True),
    "digest_upper_case_no_name": (lambda d: (d / MANIFEST_DIGEST_FILE).write_text(file_sha256(d / BUNDLE_JSON).upper()), True),
    "digest_tab_separated": (lambda d: (d / MANIFEST_DIGEST_FILE).write_text(file_sha256(d / BUNDLE_JSON) + "\t" + BUNDLE_JSON), True),
    "edited_not_resealed": (_unseal, True),
    "utf8_bom": (lambda d: _write_raw(b"\xef\xbb\xbf" + (d / BUNDLE_JSON).read_bytes())(d), True),
    "not_utf8": (_write_raw(b"\xff\xfe{"), True),
    "not_json": (_write_raw(b"{not json"), True),
    "nested_too_deep": (_write_raw(b"[" * 100000 + b"]" * 100000), True),
    "json_list": (_write_raw(b"[1, 2]"), True),
    "too_large": (_write_raw(b" " * ((4 << 20) + 1)), True),
    "nan_in_free_form_section": (_meta_text(lambda t: t[:-1] + ', "verification": {"x": NaN, "y": -Infinity}}'), True),
    "nan_threshold": (_meta_text(lambda t: t.replace('{"threshold": 0.5}', '{"threshold": NaN}')), True),
    "float_embedding_size": (_meta_text(lambda t: t.replace(f'"embedding_size": {D}, "thresholds"', f'"embedding_size": {D}.0, "thresholds"')), True),
    "hash_with_newline": (_meta_text(lambda t: _hash_newline(t)), True),
    "proto_key_in_quality": (_meta_text(lambda t: t.replace('"quality": {}', '"quality": {"__proto__": 1}')), True),
    "schema_missing_files": (lambda d: reseal(d, {k: v for k, v in read(d).items() if k != "files"}), True),
    "version": (_edit_meta(kit_version="99.0.0"), True),
    "status_failed": (_edit_meta(status="failed"), True),
    "status_not_verified": (_edit_meta(status="not-verified"), True),
    "unknown_card_field": (_edit_meta(**{"card.colour": "RGB"}), True),
    # every ModelCard field the schema lists (issue 34: int8_float_scope was refused by every SDK); the
    # fingerprint of an "ok" case is recorded, so the SDK must write the card's JSON as Python does
    "card_every_field": (_edit_meta(**{"card.params": 7, "card.mflops": 1.5, "card.arch_kwargs": {"alpha": 1.0, "widths": [1, 2]},
                                       "card.int8_float_scope": {"first": True, "last": 0}, "card.description": "d", "card.source": "s"}), True),
    "card_int8_float_scope_null": (_edit_meta(**{"card.int8_float_scope": None}), True),
    "card_int8_float_scope_bad": (_edit_meta(**{"card.int8_float_scope": {"first": True, "last": -1}}), True),
    "no_such_target": (_edit_meta(format="tensorrt", precision="fp32"), True),
    "threshold_negative": (_edit_meta(**{"thresholds.at_far.1e-3": {"threshold": -0.5}}), True),
    "threshold_zero": (_edit_meta(**{"thresholds.at_far.1e-3": {"threshold": 0.0}}), True),
    "threshold_above_one": (_edit_meta(**{"thresholds.at_far.1e-3": {"threshold": 1.5}}), True),
    "threshold_looser_far_higher": (_edit_meta(**{"thresholds.at_far.1e-4": {"threshold": 0.45}}), True),
    "threshold_not_recorded": (_edit_meta(**{"thresholds.at_far.1e-3": {"threshold": 0.55}}), True),
    "far_key_not_a_rate": (_at_far(abc=0.5), True),
    "far_key_extra_plausible": (_at_far(**{" 1e-2 ": 0.4}), True),
    "far_key_underscore": (_at_far(**{"5_0e-3": 0.45}), True),
    "codec_unknown": (_edit_meta(**{"thresholds.codecs": {"foo": {"at_far": {"1e-3": {"threshold": 0.5}, "1e-4": {"threshold": 0.6}}}}}), True),
    "codec_binary512_implausible": (_edit_meta(**{"thresholds.codecs": {"binary512": {"at_far": {"1e-3": {"threshold": 0.05}, "1e-4": {"threshold": 0.2}}}}}), True),
    "codec_binary512_plausible": (_edit_meta(**{"thresholds.codecs": {"binary512": {"at_far": {"1e-3": {"threshold": 0.1}, "1e-4": {"threshold": 0.2}}}}}), True),
    "normalization_flag_flipped": (_flip_normalization(False), True),
    "normalization_flag_and_dtype_flipped": (_flip_normalization(True), True),
    "embedding_size_not_the_cards": (_edit_meta(embedding_size=D + 1), True),
    "crop_size_not_the_cards": (_edit_meta(**{"alignment.crop_size": [H, W + 1]}), True),
    "model_file_not_hashed": (_other_model_file, True),
    "model_file_escapes": (_edit_meta(model_file="../outside.onnx"), True),
    "files_entry_escapes": (lambda d: _edit_meta(files={**read(d)["files"], "sub/../../x": "0" * 64})(d), True),
    "files_entry_dot_part": (lambda d: _edit_meta(files={**read(d)["files"], "./model.onnx": read(d)["files"]["model.onnx"]})(d), True),
    "files_entry_missing": (lambda d: _edit_meta(files={**read(d)["files"], "extra.bin": "0" * 64})(d), True),
    "link_outside": (_link_outside, False),
    "garbage_model": (_garbage_model, True),
    "model_nan": (_model("nan"), True),
    "model_constant": (_model("constant"), True),
    "model_not_unit": (_model("not_unit"), True),
    "model_zero": (_model("zero"), True),
    "model_other_weights": (_model("other_weights"), True),
    "conformance_file_replaced": (_conformance_replaced, True),
    "conformance_removed": (_conformance_removed, True),
    "quality_unknown_key": (_edit_meta(**{"quality": {"min_sharpnes": 10}}), True),
    "quality_string_value": (_edit_meta(**{"quality": {"min_sharpness": "10"}}), True),
    "quality_alias_key": (_edit_meta(**{"quality": {"min_detection_score": 0.5, "notes": "x"}}), True),
    "quality_mode_not_object": (_edit_meta(**{"quality": {"verify": 3}}), True),
    "quality_max_nonface_margin": (_edit_meta(**{"quality": {"verify": {"max_nonface_margin": 0.05}, "enroll": {"max_nonface_margin": -0.01}}}), True),
    "quality_max_nonface_margin_out_of_range": (_edit_meta(**{"quality": {"max_nonface_margin": 2}}), True),
    "quality_max_landmark_residual": (_edit_meta(**{"quality": {"verify": {"max_landmark_residual": 0.3}}}), True),
    "quality_max_landmark_residual_out_of_range": (_edit_meta(**{"quality": {"max_landmark_residual": 1.5}}), True),
    "detector_ok": (_detector(), True),
    "detector_not_hashed": (_detector(hashed=False), True),
    "detector_unknown_field": (_detector(colour="red"), True),
    "detector_licence_file_escapes": (_detector(licence_file="../LICENSE"), True),
    "nonface_ok": (_nonface, True),
    "nonface_wrong_dims": (lambda d: _nonface(d, dims=D + 1), True),
    "nonface_limit_out_of_range": (lambda d: _nonface(d, limit=1.5), True),
    "nonface_in_a_mode_section": (lambda d: _nonface(d, where="verify"), True),
    "nonface_not_object": (_edit_meta(**{"quality": {"nonface": [1]}}), True),
}


def _hash_newline(text: str) -> str:
    i = text.index('"files": {"model.onnx": "') + len('"files": {"model.onnx": "')
    return text[: i + 64] + "\\n" + text[i + 64 :]


def write_refusal_cases(out: Path) -> list[dict]:
    out = Path(out)
    base = make_tiny_bundle(out / "_base")
    cases = []
    for cid, (edit, http) in CASES.items():
        d = out / cid
        shutil.copytree(base, d, symlinks=True)
        edit(d)
        case = {"id": cid, "dir": str(d), "kind": verdict(d), "http": http}
        if case["kind"] == "ok":
            from edgeface.runtime.gallery import model_fingerprint

            case["fingerprint"] = model_fingerprint(load_bundle(d).card)
        cases.append(case)
    cases.append({"id": "missing_dir", "dir": str(out / "no-such-bundle"), "kind": verdict(out / "no-such-bundle"), "http": True})
    (out / "_empty").mkdir()
    cases.append({"id": "no_manifest", "dir": str(out / "_empty"), "kind": verdict(out / "_empty"), "http": True})
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    return cases


def write_nonface_case(bundle_dir: Path, vectors_dir: Path, out: Path) -> dict:
    """The reference bundle with a quality.nonface section (its own; or, for a bundle exported without
    one, calibrated by Python's calibrate_nonface on its conformance faces and resealed), and
    FaceRecognizer.analyze on the vectors' face images and on synthetic non-faces placed under the
    first face's landmarks."""
    from edgeface.runtime.conformance import load_conformance_set
    from edgeface.runtime.face import FaceRecognizer, Rejection
    from edgeface.runtime.quality import calibrate_nonface, nonface_crops
    from edgeface.runtime.vectors import read_vectors

    out = Path(out)
    bdir = out / "bundle-nonface"
    shutil.rmtree(bdir, ignore_errors=True)
    shutil.copytree(bundle_dir, bdir)
    meta = read(bdir)
    if "nonface" not in meta["quality"]:
        faces, _ = load_conformance_set(bdir)
        meta["quality"]["nonface"] = calibrate_nonface(load_bundle(bdir).embed, faces)
        reseal(bdir, meta)
    doc = read_vectors(vectors_dir)
    images = [(str(Path(vectors_dir) / f["image"]), f["landmarks"]) for f in doc["faces"]]
    f0 = doc["faces"][0]
    import cv2

    crops, fams = nonface_crops((f0["height"], f0["width"]), per_family=2, seed=7)
    for k, (crop, fam) in enumerate(zip(crops, fams)):
        p = out / f"nonface_{k:02d}_{fam}.png"
        cv2.imwrite(str(p), np.ascontiguousarray(crop[:, :, ::-1]))
        images.append((str(p), f0["landmarks"]))
    rec = FaceRecognizer(load_bundle(bdir))
    results = []
    for path, lm in images:
        (r,) = rec.analyze([path], [lm], mode="verify")
        report = r.quality
        results.append({"image": path, "landmarks": lm, "result": r.reason if isinstance(r, Rejection) else "ok",
                        "failed": [c.name + ":" + c.kind for c in report.failed] if report is not None else None,
                        "nonface_margin": report.measurements.get("nonface_margin") if report is not None else None})
    doc_out = {"bundle": str(bdir), "images": results}
    (out / "nonface.json").write_text(json.dumps(doc_out, indent=1))
    return doc_out
