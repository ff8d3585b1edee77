"""The conformance set inside each bundle: a few aligned crops from the calibration data (the
user's own faces), their expected embeddings and the expected same/different decisions, so
an Android / iOS / web integration can check that it reproduces the kit's numbers.

Layout in the bundle:  conformance/face_00.png ... face_07.png (aligned uint8 RGB crops),
conformance/expected.json (embeddings, pairs with cosine and decisions, tolerances) and
conformance/expected_embeddings.npy (the same embeddings, float32, no pickle).
Torch-free: `edgeface export --check BUNDLE` runs check_conformance.
"""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np

CONFORMANCE_DIR = "conformance"
# How close a re-implementation must come: fp runtimes agree to ~1e-5; int8 kernels differ
# between CPUs/delegates by a few quantisation steps.
EMBEDDING_TOLERANCE = {"fp32": 0.999, "fp16": 0.998, "int8": 0.98}
DECISION_MARGIN = 0.02  # decisions within this of the threshold may flip legitimately


def _write_png(path: Path, rgb: np.ndarray) -> None:
    try:
        import cv2

        if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
            raise OSError(f"{path}: could not write PNG")
    except ImportError:
        from PIL import Image

        Image.fromarray(rgb).save(path)


def _read_png(path: Path) -> np.ndarray:
    """The stored crop exactly (no resizing or size limits: these are already aligned crops)."""
    try:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: conformance crop missing or unreadable")
        return np.ascontiguousarray(img[:, :, ::-1])
    except ImportError:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))


def write_conformance(bundle, crops: np.ndarray, identities: list[str]) -> dict:
    """Embed `crops` through the bundle and store them with the expected results."""
    d = Path(bundle.path) / CONFORMANCE_DIR
    d.mkdir(parents=True, exist_ok=True)
    emb = bundle.embed(crops)
    names = []
    for k, crop in enumerate(crops):
        name = f"face_{k:02d}.png"
        _write_png(d / name, crop)
        names.append(name)
    np.save(d / "expected_embeddings.npy", emb.astype(np.float32), allow_pickle=False)
    thr = bundle.thresholds
    pairs = []
    for a, b in combinations(range(len(crops)), 2):
        s = float(emb[a] @ emb[b])
        pairs.append({"a": names[a], "b": names[b], "cosine": round(s, 6),
                      "same_person_label": (identities[a] == identities[b]) if identities[a] and identities[b] else None,
                      **{f"same_at_far_{k}": bool(s >= t) for k, t in thr.items()}})
    expected = {
        "faces": names,
        "input": "aligned uint8 RGB crops exactly as stored in the PNGs; feed them to the model as described in edgeface.json 'input'",
        "embeddings": [[round(float(v), 7) for v in e] for e in emb],
        "pairs": pairs,
        "thresholds": thr,
        "tolerance": {"min_cosine_to_expected": EMBEDDING_TOLERANCE[bundle.precision], "decision_margin": DECISION_MARGIN},
    }
    nonface = (bundle.meta.get("quality") or {}).get("nonface")
    if isinstance(nonface, dict):
        # the gate the set was sealed with: check_quality_gate refuses a manifest whose quality section no longer reproduces it
        expected["quality_gate"] = {"nonface": True, "held_out_seed": NONFACE_HELD_OUT_SEED, "held_out_caught": nonface.get("held_out_caught")}
    (d / "expected.json").write_text(json.dumps(expected, indent=1))
    from .bundle import file_sha256

    # hashed in edgeface.json like the model files, so the manifest digest covers them too
    stored = names + ["expected.json", "expected_embeddings.npy"]
    return {"dir": CONFORMANCE_DIR, "faces": len(names), "pairs": len(pairs), "expected": f"{CONFORMANCE_DIR}/expected.json",
            "tolerance": expected["tolerance"], "files": {f"{CONFORMANCE_DIR}/{n}": file_sha256(d / n) for n in stored}}


def load_conformance_set(bundle_dir) -> tuple[np.ndarray, dict]:
    """(the stored crops (N, H, W, 3) uint8, expected.json) of a bundle's conformance set."""
    d = Path(bundle_dir) / CONFORMANCE_DIR
    f = d / "expected.json"
    if not f.is_file():
        raise FileNotFoundError(f"{bundle_dir}: bundle has no conformance set ({f} missing)")
    from .bundle import strict_json_loads

    exp = strict_json_loads(f.read_text())  # a repeated key is a damaged record (DuplicateKeyError, a ValueError)
    crops = np.stack([_read_png(d / n) for n in exp["faces"]])
    return crops, exp


NONFACE_HELD_OUT_SEED = 1  # quality.calibrate_nonface measures held_out_caught on nonface_crops(seed=1), 24 per family
NONFACE_HELD_OUT_PER_FAMILY = 24
NONFACE_CHECKED_PER_FAMILY = 4  # the first 4 of each family (the same crops: one generator, drawn in order): 16 embeddings at load
NONFACE_SLACK = 1  # one checked crop per family may flip on another runtime (int8 kernels differ a little)


def check_quality_gate(bundle, exp: dict | None = None) -> list[str]:
    """What makes the bundle's quality gate inconsistent with what it was sealed with (empty: consistent).

    Issue 37: a resealed manifest with a loosened `quality` section let noise enrol and match other
    noise at 0.994. The export measured, per non-face family, the share of held-out synthetic
    non-faces (quality.nonface_crops, seed NONFACE_HELD_OUT_SEED: deterministic, nothing shipped)
    that its gate rejects (quality.nonface.held_out_caught, also recorded in the conformance set).
    Here the first NONFACE_CHECKED_PER_FAMILY of those crops per family go through the model and
    the LIVE gate (nonface limits and prototypes, and each mode's max_nonface_margin). Of the
    export's 24 a family missed at most m = round(24 (1 - caught)), so at least 4 - m of these 4
    must still be rejected (less NONFACE_SLACK); a family caught completely at export must be
    caught here (3 of 4 at least). A conformance record made with a non-face gate needs one in
    the manifest."""
    from .quality import MODES, NONFACE_FAMILIES, merge_thresholds, nonface_crops, nonface_margins

    if exp is None:
        exp = load_conformance_set(bundle.path)[1]
    record = exp.get("quality_gate") if isinstance(exp.get("quality_gate"), dict) else {}
    quality = bundle.meta.get("quality") or {}
    nonface = quality.get("nonface")
    if nonface is None:
        return ["the conformance set was sealed with a non-face gate (quality.nonface) that the manifest no longer has"] if record.get("nonface") else []
    want = nonface.get("held_out_caught") if isinstance(nonface, dict) else None
    if want is None and not record.get("nonface"):
        # a section written by hand or by a tool other than the export (the shared SDK case nonface_ok): nothing
        # recorded to reproduce. Every export writes held_out_caught and the conformance record, so deleting it
        # from an exported bundle is caught just below.
        return []
    if not isinstance(want, dict):
        return ["quality.nonface has no held_out_caught record although the conformance set was sealed with one"]
    if isinstance(record.get("held_out_caught"), dict) and record["held_out_caught"] != want:
        return [f"quality.nonface.held_out_caught {want} differs from the conformance record {record['held_out_caught']}"]
    h, w = bundle.card.input_size
    crops, fams = nonface_crops((h, w), per_family=NONFACE_CHECKED_PER_FAMILY, seed=NONFACE_HELD_OUT_SEED)
    margins = nonface_margins(bundle.embed(crops), nonface)
    thr = merge_thresholds(quality)
    errs = []
    for fam in NONFACE_FAMILIES:
        if fam not in want:
            errs.append(f"quality.nonface.held_out_caught has no {fam!r}")
            continue
        if isinstance(want[fam], bool) or not isinstance(want[fam], (int, float)) or not 0 <= want[fam] <= 1:
            errs.append(f"quality.nonface.held_out_caught[{fam!r}]: {want[fam]!r} is not a share in [0, 1]")
            continue
        need = NONFACE_CHECKED_PER_FAMILY - round(NONFACE_HELD_OUT_PER_FAMILY * (1.0 - float(want[fam]))) - NONFACE_SLACK
        mine = margins[[i for i, f in enumerate(fams) if f == fam]]
        got = {mode: int((mine > thr[mode]["max_nonface_margin"]).sum()) for mode in MODES}
        short = [f"{mode} {n}" for mode, n in got.items() if n < need]
        if short:
            errs.append(f"{fam}: the gate rejects {' / '.join(short)} of {NONFACE_CHECKED_PER_FAMILY} held-out non-faces, the export "
                        f"{float(want[fam]):.0%} (so at least {need})")
    if any(not e.startswith("quality.") for e in errs):
        errs.append("the quality section was loosened after export")
    return errs


def check_conformance(bundle) -> dict:
    """Re-run the stored crops; pass when every embedding is within tolerance of the expected
    one and every decision not within the margin of its threshold matches."""
    crops, exp = load_conformance_set(bundle.path)
    emb = bundle.embed(crops)
    ref = np.asarray(exp["embeddings"], np.float32)
    cos = np.sum(emb * ref, axis=1)
    tol = exp["tolerance"]
    idx = {n: k for k, n in enumerate(exp["faces"])}
    mismatched = []
    for p in exp["pairs"]:
        s = float(emb[idx[p["a"]]] @ emb[idx[p["b"]]])
        for key, t in exp["thresholds"].items():
            want = p[f"same_at_far_{key}"]
            if (s >= t) != want and abs(s - t) > tol["decision_margin"]:
                mismatched.append(f"{p['a']}~{p['b']} at FAR {key}: cosine {s:.4f} vs expected {p['cosine']:.4f}")
    ok_emb = bool(cos.min() >= tol["min_cosine_to_expected"])
    # the live thresholds must be the ones the set was recorded with (an edited threshold would
    # otherwise pass: the stored decisions are re-derived from the stored thresholds)
    live, recorded = bundle.thresholds, {str(k): float(v) for k, v in exp["thresholds"].items()}
    threshold_diffs = [f"FAR {k}: live {live.get(k)} vs recorded {v}" for k, v in recorded.items() if k not in live or abs(live[k] - v) > 1e-6]
    threshold_diffs += [f"FAR {k}: live {v}, not in the conformance record" for k, v in live.items() if k not in recorded]
    gate_errors = check_quality_gate(bundle, exp)
    return {"passed": ok_emb and not mismatched and not threshold_diffs and not gate_errors, "quality_gate_errors": gate_errors,
            "threshold_mismatches": threshold_diffs, "faces": len(cos), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "required_min_cosine": tol["min_cosine_to_expected"], "decision_mismatches": mismatched, "pairs": len(exp["pairs"])}
