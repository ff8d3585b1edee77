"""Issue 20: the quality gate's landmark-geometry check (landmark_residual, edgeface.core.align).

For each shipped template (arcface_112x112: the reference MobileFaceNet; dlib_150x150: `default`):
  1. the thresholds the export writes: LANDMARK_PERCENTILES of the residual of YuNet's landmarks
     on the export's own calibration faces (CelebA-299 + AAF-8k, seed 0, never LFW);
  2. false rejections on LFW-dev: every image of its pairs that YuNet detects, the share the check
     refuses (verify / enroll), alone and on top of every other model-free check of the gate
     (interocular, sharpness, brightness, contrast, yaw / pitch / roll, detector score; flip
     similarity and the non-face margin need the model and are left out, so the rise measured is
     an upper bound of the rise over the full gate);
  3. catch rate on corrupted landmark sets made from those LFW-dev landmarks (swaps, mirror,
     collinear, random points, stretched proportions, jitter): the check alone, the pose checks
     alone (they need no template) and either.
Torch-free, model-free (YuNet only; detections cached).

    PYTHONPATH=. python benchmarks/runtime_landmarks.py   -> benchmarks/results/runtime_landmarks.{json,md}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeface.core.align import align_face, landmark_residual, template_landmarks, TEMPLATES  # noqa: E402
from edgeface.runtime.quality import DEFAULT_THRESHOLDS, LANDMARK_PERCENTILES, QualityGate, calibrate_landmark_thresholds, measure  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = ("arcface_112x112", "dlib_150x150")
POSE = ("abs_yaw", "abs_pitch", "abs_roll")


def corrupt(lm: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = lm.mean(0)
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    t = np.linspace(-0.6, 0.6, 5)
    rng.shuffle(t)
    ang = rng.uniform(0, np.pi)
    perm = rng.permutation(5)
    while (perm == np.arange(5)).all() or (perm == [1, 0, 2, 4, 3]).all():  # identity / a correctly relabelled mirror
        perm = rng.permutation(5)
    return {
        "mirrored (left/right labels swapped)": lm[[1, 0, 2, 4, 3]],
        "eyes <-> mouth corners": lm[[3, 4, 2, 0, 1]],
        "eyes swapped": lm[[1, 0, 2, 3, 4]],
        "mouth corners swapped": lm[[0, 1, 2, 4, 3]],
        "nose <-> right eye": lm[[2, 1, 0, 3, 4]],
        "random permutation": lm[perm],
        "collinear": c + np.outer(t * iod, [np.cos(ang), np.sin(ang)]),
        "random points in the face box": c + rng.uniform(-1.2 * iod, 1.2 * iod, (5, 2)),
        "vertical x0.3 (squashed)": c + (lm - c) * [1, 0.3],
        "horizontal x2.5 (stretched)": c + (lm - c) * [2.5, 1],
        "vertical x2.5 (stretched)": c + (lm - c) * [1, 2.5],
        "jitter sigma 0.3 IOD": lm + rng.normal(0, 0.3 * iod, (5, 2)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(RESULTS / "runtime_landmarks.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from edgeface.eval.faces import default_split
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.core.imageio import ImageError, read_image
    from edgeface.eval import benchmarks

    t0 = time.time()
    store = LandmarkStore.default()
    calib_lm = []
    for f in default_split(300, 224, 2000, args.seed).calib_files:
        r = store.get(f)
        if r.status == "ok":
            calib_lm.append(np.asarray(r.landmarks, np.float64))
    files = sorted({p for pr in benchmarks.get("lfw-dev").pairs() for p in (pr.a, pr.b)})
    lfw_recs = [(f, store.get(f)) for f in files]
    store.flush()
    detected = [(f, r) for f, r in lfw_recs if r.status == "ok"]
    report = {"command": "PYTHONPATH=. python benchmarks/runtime_landmarks.py", "calibration_faces": len(calib_lm),
              "lfw_dev_images": len(files), "lfw_dev_detected": len(detected), "rule": {m: list(v) for m, v in LANDMARK_PERCENTILES.items()},
              "templates": {}}
    # model-free measurements of each detected LFW-dev face, per template (crops differ per template)
    for tname in SHIPPED:
        tpl = template_landmarks(tname)
        size = TEMPLATES[tname][1]
        thr = calibrate_landmark_thresholds([landmark_residual(lm, tpl) for lm in calib_lm])
        gate = QualityGate({m: {"max_landmark_residual": thr[m]} for m in thr})
        res, others_fail, lm_fail, any_fail = [], {m: 0 for m in thr}, {m: 0 for m in thr}, {m: 0 for m in thr}
        for f, r in detected:
            try:
                px = read_image(f).pixels
            except ImageError:
                continue
            crop = align_face(px, r.landmarks, tname, size)
            m = measure(crop, r.landmarks, r.score, None, template=tpl)
            res.append(m["landmark_residual"])
            for mode in thr:
                rep = gate.assess(m, mode)
                failed = {c.name for c in rep.failed}
                others = failed - {"landmark_residual"}
                others_fail[mode] += bool(others)
                lm_fail[mode] += "landmark_residual" in failed
                any_fail[mode] += bool(failed)
        n = len(res)
        res = np.asarray(res)
        entry = {"thresholds": thr, "calibration_percentiles": {p: round(float(np.percentile([landmark_residual(lm, tpl) for lm in calib_lm], p)), 4) for p in (50, 95, 99, 99.5, 100)},
                 "lfw_dev": {"faces": n, "residual_percentiles": {p: round(float(np.percentile(res, p)), 4) for p in (50, 90, 99, 99.9, 100)}}}
        for mode in thr:
            entry["lfw_dev"][mode] = {
                "rejected_by_landmark_check_pct": round(100 * lm_fail[mode] / n, 3),
                "rejected_by_other_model_free_checks_pct": round(100 * others_fail[mode] / n, 3),
                "rejected_with_landmark_check_pct": round(100 * any_fail[mode] / n, 3),
                "rise_pt": round(100 * (any_fail[mode] - others_fail[mode]) / n, 3),
            }
        # corrupted landmark sets
        rng = np.random.default_rng(args.seed)
        caught: dict[str, dict[str, list]] = {}
        for _, r in detected:
            for fam, lm in corrupt(np.asarray(r.landmarks, np.float64), rng).items():
                m = measure(np.zeros((size[0], size[1], 3), np.uint8), lm, template=tpl)
                d = caught.setdefault(fam, {"residual": [], "pose": []})
                d["residual"].append(m["landmark_residual"])
                d["pose"].append(any(m[k] > DEFAULT_THRESHOLDS["verify"]["max_" + k] for k in POSE))
        entry["corrupted"] = {}
        for fam, d in caught.items():
            rr, pose = np.asarray(d["residual"]), np.asarray(d["pose"])
            entry["corrupted"][fam] = {"sets": len(rr), "residual_median": round(float(np.median(rr)), 4), "pose_checks_pct": round(100 * pose.mean(), 2),
                                       **{f"{mode}_landmark_check_pct": round(100 * float(np.mean(rr > thr[mode])), 2) for mode in thr},
                                       **{f"{mode}_either_pct": round(100 * float(np.mean((rr > thr[mode]) | pose)), 2) for mode in thr}}
        report["templates"][tname] = entry
    report["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(md(report))
    print(md(report))
    return 0


def md(rep: dict) -> str:
    lines = [f"# Landmark-geometry check (landmark_residual): {rep['command']}", "",
             f"Thresholds from YuNet's landmarks on {rep['calibration_faces']} export calibration faces (CelebA-299 + AAF-8k): "
             + ", ".join(f"{m} = {f:g} x p{p:g}" for m, (p, f) in rep["rule"].items())
             + f". LFW-dev: {rep['lfw_dev_detected']} of {rep['lfw_dev_images']} pair images detected.", ""]
    for tname, e in rep["templates"].items():
        lines += [f"## {tname}: max_landmark_residual verify {e['thresholds']['verify']}, enroll {e['thresholds']['enroll']}", "",
                  f"LFW-dev residual percentiles {e['lfw_dev']['residual_percentiles']}", "",
                  "| mode | refused by the landmark check | refused by the other model-free checks | refused with it | rise |", "|---|---|---|---|---|"]
        for mode in ("verify", "enroll"):
            x = e["lfw_dev"][mode]
            lines.append(f"| {mode} | {x['rejected_by_landmark_check_pct']:.2f} % | {x['rejected_by_other_model_free_checks_pct']:.2f} % | "
                         f"{x['rejected_with_landmark_check_pct']:.2f} % | +{x['rise_pt']:.2f} pt |")
        lines += ["", "| corrupted landmarks (from LFW-dev faces) | sets | median residual | caught: landmark check (verify / enroll) | pose checks | either (verify) |",
                  "|---|---|---|---|---|---|"]
        for fam, c in e["corrupted"].items():
            lines.append(f"| {fam} | {c['sets']} | {c['residual_median']:.3f} | {c['verify_landmark_check_pct']:.1f} % / {c['enroll_landmark_check_pct']:.1f} % | "
                         f"{c['pose_checks_pct']:.1f} % | {c['verify_either_pct']:.1f} % |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
