"""Shared SDK test vectors: what every SDK (C++ core, Java front, TypeScript package) must
reproduce from the Python runtime, written from real faces at test time.

    python -m edgeface.runtime.vectors write --bundle BUNDLE --out DIR [--shared ../shared]
    python -m edgeface.runtime.vectors check --bundle BUNDLE --vectors DIR   # the Python runtime on them

The format (vectors.json + raw files beside it) is specified in sdk/VECTORS.md. Everything
expected is computed by the public runtime (FaceRecognizer, Gallery, codecs, QualityGate), so
the vectors say what the Python runtime does, not what a second implementation thinks it does.
Images come from ../shared (LFW-dev) and are copied/derived into DIR at run time: never commit a
vector directory. Torch-free.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.align import align_face
from ..core.imageio import ImageError, read_image
from .bundle import BUNDLE_JSON, Bundle, BundleError, file_sha256, load_bundle, write_manifest_digest
from .codecs import CODECS, get_codec
from .conformance import EMBEDDING_TOLERANCE, DECISION_MARGIN
from .face import FaceRecognizer, Rejection
from .gallery import Gallery, model_fingerprint
from .quality import MODES, flip_similarity, measure, nonface_margins

FORMAT = "edgeface-sdk-vectors"
VERSION = 1
VECTORS_JSON = "vectors.json"
FARS = ("1e-3", "1e-4")
# Enrolled identities (LFW-dev folders with >= 5 images): the first ENROLL_IMAGES images enrol,
# the next PROBES_PER_PERSON are probes. OTHER_PEOPLE are never enrolled (open-set probes).
ENROLLED = ("Hugo_Chavez", "Laura_Bush", "Tony_Blair", "Jennifer_Capriati")
OTHER_PEOPLE = ("Colin_Powell", "Jacques_Chirac")
ENROLL_IMAGES = 3
PROBES_PER_PERSON = 1
GALLERY_CODECS = ("float32", "int8", "binary512")
TOP_K = 3
# How close an SDK must come (documented in sdk/VECTORS.md).
CROP_MAX_ABS_DIFF = 1  # grey levels, per pixel and channel, raw RGB + landmarks -> crop
CROP_MAX_DIFF_FRACTION = 0.01  # fraction of crop values allowed to differ at all (by <= 1)
QUALITY_ABS_TOLERANCE = {  # on the measures computed from the vector's own crop + landmarks
    "interocular": 1e-3, "yaw": 1e-3, "pitch": 1e-3, "roll": 1e-3, "abs_yaw": 1e-3, "abs_pitch": 1e-3, "abs_roll": 1e-3,
    "sharpness": 0.05, "brightness": 1e-3, "contrast": 1e-3, "flip_similarity": 2e-3, "nonface_margin": 2e-3,
    # float64 closed form on the vector's landmarks and the manifest's alignment.landmarks (rounded
    # to 4 decimals, where Python uses the unrounded template): differences stay far below this
    "landmark_residual": 1e-5,
}
BAD_BUNDLES_DIR = "bundles"  # bundle_errors: the refused bundles, made here once for every SDK
SCORE_ABS_TOLERANCE = 2e-3  # cosine / Hamming similarity from the SDK's own embeddings
JPEG_DECODE_NOTE = "JPEG decoders differ (IDCT, chroma upsampling): decoded pixels are compared with decode_max_abs_diff"
JPEG_DECODE_MAX_ABS_DIFF = 32
JPEG_EMBEDDING_MIN_COSINE = 0.99
# From a JPEG file, another decoder moves the gate's measures a little: a face whose measure lies within
# this of a verify-gate threshold may pass or fail there (issue 34: the default int8 bundle's flip
# similarity 0.98635 against its 0.9865 limit). An SDK may then give another verdict for that face's
# file path, and skips the decisions that depend on it; everything else about the face is still checked.
JPEG_GATE_MARGIN = {"flip_similarity": 0.002, "nonface_margin": 0.002, "sharpness": 2.0, "brightness": 1.0, "contrast": 1.0}


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def _write_raw(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ascontiguousarray(arr).tobytes())


def _codes_hex(emb: np.ndarray, dim: int) -> dict[str, str]:
    return {name: get_codec(name, dim).to_bytes(emb).hex() for name in CODECS}


def _lfw_images(shared: Path, person: str) -> list[Path]:
    d = shared / "datasets" / "lfw-dev" / "images" / person
    files = sorted(d.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"{d}: no LFW-dev images for {person} (is ../shared there?)")
    return files


def _landmarks(detector, pixels: np.ndarray) -> np.ndarray | None:
    from ..core.detect import pick_primary

    det = pick_primary(detector.detect(pixels), pixels.shape)
    return None if det is None else np.round(det.landmarks.astype(np.float64), 3)


def _save_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"{path}: could not write PNG")


def _gather_inputs(shared: Path, detector, out: Path) -> list[dict]:
    """Copy/derive the input images into out/images; returns [{id, identity, role, path, landmarks}]."""
    import cv2

    items = []
    plan = [(p, "enroll" if k < ENROLL_IMAGES else "probe") for p in ENROLLED for k in range(ENROLL_IMAGES + PROBES_PER_PERSON)]
    plan += [(p, "probe") for p in OTHER_PEOPLE]
    taken: dict[str, int] = {}
    for person, role in plan:
        files = _lfw_images(shared, person)
        k = taken.get(person, 0)
        while True:
            if k >= len(files):
                raise RuntimeError(f"not enough LFW-dev images of {person} with a detected face")
            src = files[k]
            k += 1
            pixels = read_image(src).pixels
            lm = _landmarks(detector, pixels)
            if lm is not None:
                break
        taken[person] = k
        fid = f"f{len(items):02d}"
        dst = out / "images" / f"{fid}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)  # the original bytes: the decode path is part of the vector
        items.append({"id": fid, "identity": person, "role": role, "path": dst, "landmarks": lm, "source": f"lfw-dev/{person}/{src.name}"})
    # Lossless variants (PNG: every decoder gives the same pixels) and two the gate must refuse.
    base = items[0]
    pixels = read_image(base["path"]).pixels
    variants = {
        "png": pixels,
        "blurred": cv2.GaussianBlur(pixels, (0, 0), 3.0),
        "dark": (pixels.astype(np.float32) * 0.12).astype(np.uint8),
    }
    for what, img in variants.items():
        fid = f"f{len(items):02d}"
        dst = out / "images" / f"{fid}.png"
        _save_png(dst, img)
        items.append({"id": fid, "identity": base["identity"], "role": "probe", "path": dst, "landmarks": base["landmarks"],
                      "source": f"{base['source']} ({what})"})
    return items


def _error_cases(out: Path, good: dict) -> list[dict]:
    """Inputs every SDK must refuse with the same kind as the Python runtime."""
    d = out / "errors"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.jpg").write_bytes(b"")
    (d / "garbage.jpg").write_bytes(b"this is not an image at all\n" * 20)
    jpg = Path(good["path"]).read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[:64])
    _save_png(d / "tiny.png", np.full((16, 16, 3), 128, np.uint8))
    # uniform noise the size of the good face's image, with its landmarks: only the non-face check
    # (quality.nonface, gate measure nonface_margin) can tell it from a face
    h, w = read_image(good["path"]).pixels.shape[:2]
    _save_png(d / "noise.png", np.random.default_rng(18).integers(0, 256, (h, w, 3), dtype=np.uint8))
    lm = good["landmarks"].tolist()
    nan_lm = [list(p) for p in lm]
    nan_lm[2][0] = float("nan")
    far_lm = [list(p) for p in lm]
    far_lm[0] = [-50.0, 10.0]
    same_eyes = [list(p) for p in lm]
    same_eyes[1] = list(same_eyes[0])
    mouth_swapped = [list(p) for p in lm]  # a shape no face has: the gate's landmark_residual refuses it
    mouth_swapped[3], mouth_swapped[4] = list(lm[4]), list(lm[3])
    img = _rel(Path(good["path"]), out)
    cases = [
        ("empty_file", "errors/empty.jpg", lm),
        ("garbage_bytes", "errors/garbage.jpg", lm),
        ("truncated_jpeg", "errors/truncated.jpg", lm),
        ("tiny_image", "errors/tiny.png", [[4, 5], [10, 5], [8, 8], [5, 11], [10, 11]]),
        ("missing_file", "errors/does-not-exist.jpg", lm),
        ("four_landmarks", img, lm[:4]),
        ("eleven_values", img, sum(lm, []) + [1.0]),
        ("nan_landmark", img, nan_lm),
        ("eye_outside_image", img, far_lm),
        ("eyes_coincide", img, same_eyes),
        ("mouth_corners_swapped", img, mouth_swapped),
        ("nonface_noise", "errors/noise.png", lm),
    ]
    return [{"id": cid, "image": path, "landmarks": lmk} for cid, path, lmk in cases]


def _nonface_margin(rec: FaceRecognizer, emb: np.ndarray) -> float | None:
    """The gate's nonface_margin of one embedding (None for a bundle without quality.nonface)."""
    return None if rec.nonface is None else float(nonface_margins(emb[None], rec.nonface)[0])


def _link_copy(src: Path, dst: Path) -> None:
    """A copy of a bundle made of hard links where the filesystem allows (no model copy per case).
    The edits below only ever replace whole files (unlink + write), never write into a linked one."""
    for p in sorted(src.rglob("*")):
        q = dst / p.relative_to(src)
        if p.is_dir():
            q.mkdir(parents=True, exist_ok=True)
            continue
        q.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, q)
        except OSError:
            shutil.copy2(p, q)


def _replace(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _bundle_error_cases(bundle_dir: Path, out: Path) -> list[dict]:
    """Bundles every SDK must refuse, made under out/bundles/<id>/, each with what Python's
    load_bundle says: `kind` (the SDK error kind: missing / bundle) and `bundle_kind` (BundleError.kind,
    docs/runtime.md "Bundle refusal rules"). Edits of edgeface.json are re-sealed (edgeface.json.sha256
    rewritten) so the rule under test is reached, except in the two digest cases."""
    root = out / BAD_BUNDLES_DIR
    meta0 = json.loads((bundle_dir / BUNDLE_JSON).read_text())
    model = meta0["model_file"]

    def meta_edit(fn, reseal=True):
        def edit(d: Path) -> None:
            m = json.loads((d / BUNDLE_JSON).read_text())
            fn(m, d)
            _replace(d / BUNDLE_JSON, json.dumps(m, indent=1).encode())
            if reseal:
                write_manifest_digest(d)
        return edit

    def rehash(m: dict, d: Path, name: str) -> None:
        m["conformance"]["files"][name] = file_sha256(d / name)

    def flip_model_byte(d: Path) -> None:
        data = bytearray((d / model).read_bytes())
        data[len(data) // 2] ^= 0x55
        _replace(d / model, bytes(data))

    def garbage_model(m: dict, d: Path) -> None:  # garbage whose hash is recorded: only loading it fails
        _replace(d / model, b"this is not an ONNX model\n" * 64)
        m["files"][model] = file_sha256(d / model)

    def edit_expected(fn):
        def edit(m: dict, d: Path) -> None:
            f = d / "conformance" / "expected.json"
            exp = json.loads(f.read_text())
            fn(exp)
            _replace(f, json.dumps(exp).encode())
            rehash(m, d, "conformance/expected.json")
        return edit

    def package_dir(m: dict, d: Path) -> None:  # the model inside a package directory holding an unhashed file
        (d / "pkg").mkdir()
        os.replace(d / model, d / "pkg" / model)
        (d / "pkg" / "extra.bin").write_bytes(b"not hashed")
        m["files"] = {f"pkg/{model}" if k == model else k: v for k, v in m["files"].items()}
        m["model_file"] = "pkg"

    def no_conformance(m: dict, d: Path) -> None:
        shutil.rmtree(d / "conformance")
        m.pop("conformance", None)

    def first_limit(value):
        def fn(m: dict, d: Path) -> None:
            m["quality"].setdefault("nonface", {"prototypes": [[1.0] + [0.0] * (meta0["embedding_size"] - 1)], "limits": [0.5]})
            m["quality"]["nonface"]["limits"][0] = value
        return fn

    cases = [
        ("missing_dir", "a path that does not exist", None),
        ("no_meta", f"a directory without {BUNDLE_JSON}", lambda d: (d / BUNDLE_JSON).unlink()),
        ("bad_json", f"{BUNDLE_JSON} replaced by '{{not json' (re-sealed)",
         lambda d: (_replace(d / BUNDLE_JSON, b"{not json"), write_manifest_digest(d))),
        ("tampered_manifest", f"the 1e-3 threshold lowered in {BUNDLE_JSON}, digest not updated",
         meta_edit(lambda m, d: m["thresholds"]["at_far"]["1e-3"].update(threshold=0.2), reseal=False)),
        ("no_digest", "edgeface.json.sha256 removed", lambda d: (d / "edgeface.json.sha256").unlink()),
        ("schema", f"{BUNDLE_JSON} without its 'files' field", meta_edit(lambda m, d: m.pop("files"))),
        ("path_escape", "a files entry '../x'", meta_edit(lambda m, d: m["files"].update({"../x": "a" * 64}))),
        ("model_not_hashed", "model_file names a file that is not in 'files'", meta_edit(lambda m, d: m.update(model_file="other.onnx"))),
        ("package_unhashed_file", "the model moved into a package directory 'pkg' that also holds an unhashed file", meta_edit(package_dir)),
        ("input_contract", "input value_range [0, 1] with normalisation in the graph", meta_edit(lambda m, d: m["input"].update(value_range=[0, 1]))),
        ("negative_threshold", "the 1e-3 threshold set to -0.5", meta_edit(lambda m, d: m["thresholds"]["at_far"]["1e-3"].update(threshold=-0.5))),
        ("unknown_quality_key", "quality.verify gets a key 'min_smile'", meta_edit(lambda m, d: m["quality"].setdefault("verify", {}).update(min_smile=1.0))),
        ("bad_nonface_limit", "quality.nonface.limits[0] set to 2", meta_edit(first_limit(2.0))),
        ("other_major_version", "kit_version's major number changed", meta_edit(lambda m, d: m.update(kit_version="99.0.0"))),
        ("status_failed", "status set to 'failed'", meta_edit(lambda m, d: m.update(status="failed"))),
        ("tampered_model", "one byte of the model file flipped", flip_model_byte),
        ("tampered_conformance", "conformance/expected.json changed, its hash not updated",
         lambda d: _replace(d / "conformance" / "expected.json", (d / "conformance" / "expected.json").read_bytes() + b" ")),
        ("garbage_model", "the model file replaced by text, its hash updated", meta_edit(garbage_model)),
        ("conformance_mismatch", "conformance/expected.json embeddings rotated by one face (rehashed)",
         meta_edit(edit_expected(lambda e: e.update(embeddings=e["embeddings"][1:] + e["embeddings"][:1])))),
        ("conformance_thresholds", "conformance/expected.json records another 1e-3 threshold (rehashed)",
         meta_edit(edit_expected(lambda e: e["thresholds"].update({"1e-3": e["thresholds"]["1e-3"] + 0.05})))),
        ("no_conformance", "the conformance set removed (directory and manifest section)", meta_edit(no_conformance)),
    ]
    out_cases = []
    for cid, make, edit in cases:
        d = root / cid
        if edit is not None:
            _link_copy(bundle_dir, d)
            edit(d)
        try:
            load_bundle(d)
        except BundleError as exc:  # BundleNotFoundError (kind not_found) is also a FileNotFoundError
            kind = "missing" if isinstance(exc, FileNotFoundError) else "bundle"
            out_cases.append({"id": cid, "make": make, "dir": _rel(d, out), "kind": kind, "bundle_kind": exc.kind})
            continue
        raise RuntimeError(f"bundle error case {cid}: Python's load_bundle accepted it ({make})")
    return out_cases


def _json_landmarks(lm) -> object:
    """Landmarks for JSON: NaN as the string "nan" (JSON has no NaN)."""
    if isinstance(lm, (list, tuple)):
        return [_json_landmarks(v) for v in lm]
    v = float(lm)
    return "nan" if not np.isfinite(v) else v


def landmarks_from_json(lm) -> list:
    """Landmarks read back from JSON, nested lists kept: numbers as floats, the string "nan" as NaN."""
    if isinstance(lm, list):
        return [landmarks_from_json(v) for v in lm]
    return float("nan") if lm == "nan" else float(lm)


def _flatten(v) -> list[float]:
    return [x for item in v for x in _flatten(item)] if isinstance(v, list) else [v]


def write_vectors(bundle_path: str | os.PathLike, out: str | os.PathLike, shared: str | os.PathLike | None = None, detector_model: str | os.PathLike | None = None) -> dict:
    """Write the vector directory `out` for `bundle_path`; returns the vectors.json document."""
    from ..core import paths
    from ..core.detect import YuNetDetector

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shared = Path(shared) if shared is not None else paths.shared_dir()
    detector = YuNetDetector(detector_model or paths.yunet_model())
    bundle = load_bundle(bundle_path)
    card = bundle.card
    dim = card.embedding_size
    rec = FaceRecognizer(bundle)
    items = _gather_inputs(shared, detector, out)

    faces = []
    by_id: dict[str, dict] = {}
    for it in items:
        pixels = read_image(it["path"]).pixels
        fid = it["id"]
        lm = it["landmarks"]
        crop = align_face(pixels, lm, card.template, card.input_size)
        _write_raw(out / "pixels" / f"{fid}.rgb", pixels)
        _write_raw(out / "crops" / f"{fid}.rgb", crop)
        flips, embs = flip_similarity(bundle, crop[None])
        emb = embs[0].astype(np.float32)
        _write_raw(out / "embeddings" / f"{fid}.f32", emb.astype("<f4"))
        m = measure(crop, lm, flip_similarity=float(flips[0]), nonface_margin=_nonface_margin(rec, emb), template=rec.template_points)
        quality = {}
        for mode in MODES:
            rep = rec.gate.assess(m, mode)
            quality[mode] = {"passed": rep.passed, "failed": [c.name + ":" + c.kind for c in rep.failed], "weight": rep.weight}
        (result,) = rec.analyze([str(it["path"])], [lm], mode="verify")
        rec_face = {
            "id": fid,
            "identity": it["identity"],
            "role": it["role"],
            "source": it["source"],
            "image": _rel(Path(it["path"]), out),
            "image_format": Path(it["path"]).suffix.lstrip(".").replace("jpg", "jpeg"),
            "pixels": f"pixels/{fid}.rgb",
            "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]),
            "landmarks": lm.tolist(),
            "crop": f"crops/{fid}.rgb",
            "crop_shape": list(crop.shape),
            "measurements": {k: float(v) for k, v in m.items()},
            "quality": quality,
            "embedding": f"embeddings/{fid}.f32",
            "codes": _codes_hex(emb, dim),
            "analyze_verify": "ok" if not isinstance(result, Rejection) else result.reason,
        }
        if not isinstance(result, Rejection):
            # The same path from the file: decode + align + embed, as the app calls it.
            rec_face["analyze_embedding_cosine_to_embedding"] = float(result.embedding @ emb)
        faces.append(rec_face)
        by_id[fid] = {"emb": emb, "path": str(it["path"]), "lm": lm, "ok": not isinstance(result, Rejection)}

    thresholds = {"cosine": bundle.thresholds}
    for name in CODECS:
        if CODECS[name].hamming_scores:
            thresholds[name] = bundle.codec_thresholds(name)

    pairs = []
    ids = [f["id"] for f in faces]
    for a, b in combinations(ids, 2):
        ea, eb = by_id[a]["emb"], by_id[b]["emb"]
        cos = float(ea @ eb)
        entry = {"a": a, "b": b, "cosine": cos, "same_at_far": {far: bool(cos >= t) for far, t in bundle.thresholds.items()}, "codecs": {}}
        for name, thr in thresholds.items():
            if name == "cosine" or not thr:
                continue
            c = get_codec(name, dim)
            s = float(c.similarity(ea, c.encode(eb[None]))[0, 0])
            entry["codecs"][name] = {"similarity": s, "same_at_far": {far: bool(s >= t) for far, t in thr.items()}}
        res = rec.compare(by_id[a]["path"], by_id[b]["path"], far="1e-3", landmarks_a=by_id[a]["lm"], landmarks_b=by_id[b]["lm"])
        entry["compare_1e-3"] = res.decision
        pairs.append(entry)

    enrol_people = {p: [f["id"] for f in faces if f["identity"] == p and f["role"] == "enroll"] for p in ENROLLED}
    probes = [f["id"] for f in faces if f["role"] == "probe"]
    galleries = []
    for codec in GALLERY_CODECS:
        gpath = out / f"gallery-{codec}.db"
        g = Gallery(gpath, card=card, codec=codec)
        grec = FaceRecognizer(bundle, gallery=g)
        enrolment = {}
        for person, fids in enrol_people.items():
            res = grec.enroll(person, [by_id[f]["path"] for f in fids], [by_id[f]["lm"] for f in fids])
            enrolment[person] = {
                "images": fids,
                "enrolled": res.enrolled,
                "used": [fids[[by_id[f]["path"] for f in fids].index(u.source)] for u in res.used],
                "rejected": [{"id": fids[[by_id[f]["path"] for f in fids].index(r.source)], "reason": r.reason} for r in res.rejected],
                "template_quality": res.quality,
                "template_code": g.template_code(person)[0].tobytes().hex() if res.enrolled else None,
            }
        # verify claims a person the gallery holds: the probe's own identity when enrolled, else the first one enrolled
        # (with the reduced calibration of the tests, the enrol gate may refuse every image of someone)
        enrolled = [p for p in ENROLLED if enrolment[p]["enrolled"]]
        searches = []
        for pid in probes:
            entry = {"probe": pid, "top_k": TOP_K}
            if by_id[pid]["ok"]:
                entry["candidates"] = [m.to_dict() | {"score": float(m.score)} for m in g.search(by_id[pid]["emb"], top_k=TOP_K, use_index=False)[0]]
            entry["identify"] = {}
            entry["verify"] = {}
            for far in FARS:
                ir = grec.identify(by_id[pid]["path"], top_k=TOP_K, far=far, landmarks=by_id[pid]["lm"], use_index=False)
                entry["identify"][far] = {"decision": ir.decision, "name": ir.name, "score": ir.score}
                if not enrolled:
                    continue
                claimed = faces[ids.index(pid)]["identity"] if faces[ids.index(pid)]["identity"] in enrolled else enrolled[0]
                vr = grec.verify(by_id[pid]["path"], claimed, far=far, landmarks=by_id[pid]["lm"])
                entry["verify"][far] = {"name": claimed, "decision": vr.decision, "similarity": vr.similarity, "threshold": vr.threshold}
            searches.append(entry)
        g.close()
        galleries.append({"codec": codec, "file": gpath.name, "identities": sorted(enrolled), "enrolment": enrolment, "searches": searches,
                          "thresholds": grec.thresholds})

    errors = []
    for case in _error_cases(out, items[0]):
        lm = np.array(case["landmarks"], dtype=np.float64)
        (res,) = rec.analyze([str(out / case["image"])], [lm.ravel()], mode="verify")
        entry = {**case, "landmarks": _json_landmarks(case["landmarks"]), "kind": res.reason if isinstance(res, Rejection) else "ok"}
        if isinstance(res, Rejection) and res.quality is not None:
            entry["failed"] = [c.name + ":" + c.kind for c in res.quality.failed]
        errors.append(entry)

    doc = {
        "format": FORMAT,
        "version": VERSION,
        "kit_version": __version__,
        "bundle": {
            "path": str(Path(bundle_path).resolve()),
            "model_file": bundle.meta["model_file"],
            "model_sha256": bundle.meta["files"][bundle.meta["model_file"]],
            "format": bundle.format,
            "precision": bundle.precision,
            "model_fingerprint": model_fingerprint(card),
            "card_json": card.to_json(),
            "template": card.template,
            "input_size": list(card.input_size),
            "embedding_size": dim,
        },
        "tolerances": {
            "crop_max_abs_diff": CROP_MAX_ABS_DIFF,
            "crop_max_diff_fraction": CROP_MAX_DIFF_FRACTION,
            "embedding_min_cosine": EMBEDDING_TOLERANCE[bundle.precision],
            "decision_margin": DECISION_MARGIN,
            "score_abs": SCORE_ABS_TOLERANCE,
            "quality_abs": QUALITY_ABS_TOLERANCE,
            "jpeg_decode_max_abs_diff": JPEG_DECODE_MAX_ABS_DIFF,
            "jpeg_embedding_min_cosine": JPEG_EMBEDDING_MIN_COSINE,
            "jpeg_gate_margin": JPEG_GATE_MARGIN,
            "note": JPEG_DECODE_NOTE,
        },
        "thresholds": thresholds,
        "quality_thresholds": rec.gate.thresholds,
        "faces": faces,
        "pairs": pairs,
        "galleries": galleries,
        "errors": errors,
        "bundle_errors": _bundle_error_cases(Path(bundle_path), out),
        "gallery_errors": [
            {"id": "not_sqlite", "make": "a gallery file holding text", "kind": "gallery"},
            {"id": "foreign_sqlite", "make": "an SQLite file with another application_id", "kind": "gallery"},
            {"id": "newer_schema", "make": "user_version set to 99", "kind": "gallery"},
            {"id": "other_model", "make": "meta.model_fingerprint changed", "kind": "model_mismatch"},
        ],
    }
    (out / VECTORS_JSON).write_text(json.dumps(doc, indent=1))
    return doc


def read_vectors(vectors_dir: str | os.PathLike) -> dict:
    """The vectors.json document of a vector directory; raises FileNotFoundError when it is missing, ValueError when
    it is another format or version."""
    f = Path(vectors_dir) / VECTORS_JSON
    if not f.is_file():
        raise FileNotFoundError(f"{vectors_dir}: no {VECTORS_JSON} (write one with `python -m edgeface.runtime.vectors write`)")
    doc = json.loads(f.read_text())
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{f}: not {FORMAT} version {VERSION}")
    return doc


def check_vectors(bundle: Bundle | str | os.PathLike, vectors_dir: str | os.PathLike) -> list[str]:
    """Run the Python runtime on the vectors; returns the mismatches (empty: it reproduces them)."""
    d = Path(vectors_dir)
    doc = read_vectors(d)
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    tol = doc["tolerances"]
    rec = FaceRecognizer(bundle)
    bad: list[str] = []
    dim = doc["bundle"]["embedding_size"]
    if model_fingerprint(bundle.card) != doc["bundle"]["model_fingerprint"]:
        bad.append("bundle: model fingerprint differs from the vectors'")
    embs = {}
    for f in doc["faces"]:
        h, w = f["height"], f["width"]
        pixels = np.frombuffer((d / f["pixels"]).read_bytes(), np.uint8).reshape(h, w, 3)
        want_crop = np.frombuffer((d / f["crop"]).read_bytes(), np.uint8).reshape(f["crop_shape"])
        crop = align_face(pixels, np.array(f["landmarks"]), bundle.card.template, bundle.card.input_size)
        diff = np.abs(crop.astype(np.int16) - want_crop)
        if diff.max() > tol["crop_max_abs_diff"] or (diff > 0).mean() > tol["crop_max_diff_fraction"]:
            bad.append(f"{f['id']}: crop differs (max {diff.max()}, {(diff > 0).mean():.4f} of values)")
        flips, e = flip_similarity(bundle, want_crop[None])
        want = np.frombuffer((d / f["embedding"]).read_bytes(), "<f4")
        if float(e[0] @ want) < tol["embedding_min_cosine"]:
            bad.append(f"{f['id']}: embedding cosine {float(e[0] @ want):.6f} < {tol['embedding_min_cosine']}")
        embs[f["id"]] = e[0]
        m = measure(want_crop, np.array(f["landmarks"]), flip_similarity=float(flips[0]), nonface_margin=_nonface_margin(rec, e[0]),
                    template=rec.template_points)
        for k, v in f["measurements"].items():
            if abs(m[k] - v) > tol["quality_abs"].get(k, 1e-3):
                bad.append(f"{f['id']}: quality {k} {m[k]} vs {v}")
        for mode in MODES:
            rep = rec.gate.assess(m, mode)
            if rep.passed != f["quality"][mode]["passed"]:
                bad.append(f"{f['id']}: {mode} gate {rep.passed} vs {f['quality'][mode]['passed']}")
        for name, hexcode in f["codes"].items():
            if get_codec(name, dim).to_bytes(want).hex() != hexcode:
                bad.append(f"{f['id']}: {name} code differs")
    for p in doc["pairs"]:
        s = float(embs[p["a"]] @ embs[p["b"]])
        for far, t in doc["thresholds"]["cosine"].items():
            if (s >= t) != p["same_at_far"][far] and abs(s - t) > tol["decision_margin"]:
                bad.append(f"{p['a']}~{p['b']} at {far}: {s:.4f}")
    for g in doc["galleries"]:
        with Gallery(d / g["file"], readonly=True) as gal:
            gal.check_model(bundle.card)
            for s in g["searches"]:
                if "candidates" not in s:
                    continue
                got = gal.search(embs[s["probe"]], top_k=s["top_k"], use_index=False)[0]
                if [m.name for m in got] != [c["name"] for c in s["candidates"]] and not _ties(got, s["candidates"], tol["score_abs"]):
                    bad.append(f"{g['file']} {s['probe']}: {[m.name for m in got]} vs {[c['name'] for c in s['candidates']]}")
    for e in doc["errors"]:
        lm = np.asarray(_flatten(landmarks_from_json(e["landmarks"])), np.float64)
        (res,) = rec.analyze([str(d / e["image"])], [lm], mode="verify")
        kind = res.reason if isinstance(res, Rejection) else "ok"
        if kind != e["kind"]:
            bad.append(f"error case {e['id']}: {kind} vs {e['kind']}")
        failed = [c.name + ":" + c.kind for c in res.quality.failed] if isinstance(res, Rejection) and res.quality is not None else None
        if "failed" in e and failed != e["failed"]:
            bad.append(f"error case {e['id']}: failed checks {failed} vs {e['failed']}")
    for e in doc["bundle_errors"]:
        try:
            load_bundle(d / e["dir"])
            got = ("ok", None)
        except BundleError as exc:
            got = ("missing" if isinstance(exc, FileNotFoundError) else "bundle", exc.kind)
        if got != (e["kind"], e["bundle_kind"]):
            bad.append(f"bundle error case {e['id']}: {got} vs {(e['kind'], e['bundle_kind'])}")
    return bad


def _ties(got, want, tol: float) -> bool:
    """Same candidates up to the order of scores within `tol` of each other."""
    if len(got) != len(want):
        return False
    return all(g.name == w["name"] or abs(g.score - w["score"]) <= tol for g, w in zip(got, want))


def main(argv: list[str] | None = None) -> int:
    """Command line `python -m edgeface.runtime.vectors write|check`: write a vector directory, or check the Python
    runtime reproduces one. Returns 0, 1 on mismatches, 2 on an error."""
    ap = argparse.ArgumentParser(prog="python -m edgeface.runtime.vectors", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a vector directory from real faces")
    w.add_argument("--bundle", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--shared", default=None, help="the shared data folder (default: ../shared or EDGEFACE_SHARED)")
    c = sub.add_parser("check", help="run the Python runtime on a vector directory")
    c.add_argument("--bundle", required=True)
    c.add_argument("--vectors", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "write":
            doc = write_vectors(a.bundle, a.out, a.shared)
            print(f"wrote {a.out}/{VECTORS_JSON}: {len(doc['faces'])} faces, {len(doc['pairs'])} pairs, {len(doc['galleries'])} galleries, {len(doc['errors'])} error cases")
            return 0
        bad = check_vectors(a.bundle, a.vectors)
    except (ValueError, FileNotFoundError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in bad:
        print(line)
    print("vectors: " + ("all reproduced" if not bad else f"{len(bad)} mismatches"))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
