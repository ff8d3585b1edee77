"""Issue 37: faces turned 90°, 180° or 270° through the runtime, before and after the orientation
check (edgeface.core.detect.orientation_scores, refused as "rotated"), and what the other options
would have caught. The user's path: the bundle given (the shipped `default` exported to ONNX fp32),
YuNet, FaceRecognizer; LFW-dev photos (one per person, the first N people in name order; evaluation
data, nothing here is tuned on it: the check's rule is "the upright score is the highest").

Per photo and turn (0°, 90°, 180°, 270° counter-clockwise, numpy), the face is located and embedded
once with the orientation check off; the verify and enrol gates are then applied to its quality
measurements, and the check's decision is read from orientation_scores. Reported:
  * turned photos passing the verify / enrol gates, before and after;
  * pairs of DIFFERENT people (A enrolled turned, B verified turned by the same angle) that match at
    the bundle's FAR 1e-3 threshold, before and after (after: a pair with a refused photo is no match);
  * upright: genuine LFW-dev pairs (the first fold(s)) accepted before / after, and impostor pairs;
  * the options' costs and catches: the mosaic check (one extra detection), a second full-image
    detection at 180° (one extra detection, sees only upside down), landmark-geometry rules (free:
    the best single threshold on pitch, landmark residual, mouth/eye width ratio keeping 99 % of
    upright faces);
  * CPU ms per verify (process time, 1 thread) with the check and without, same probes, interleaved.

    PYTHONPATH=. python benchmarks/runtime_orientation.py --bundle /work/tmp/default-onnx-fp32 --people 300 --folds 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--detector", default=None, help="YuNet ONNX (default: ../shared's)")
    ap.add_argument("--people", type=int, default=300, help="LFW-dev people (first photo each)")
    ap.add_argument("--folds", type=int, default=1, help="LFW-dev folds whose genuine / impostor pairs are measured upright")
    ap.add_argument("--max-pairs", type=int, default=0, help="at most this many upright LFW-dev pairs (0: all of --folds)")
    ap.add_argument("--timing-probes", type=int, default=40)
    ap.add_argument("--far", default="1e-3")
    ap.add_argument("--out", default="benchmarks/results/runtime_orientation.json")
    args = ap.parse_args(argv)

    from edgeface.core import paths
    from edgeface.core.align import estimate_pose, landmark_residual
    from edgeface.core.detect import Detection, YuNetDetector, orientation_scores
    from edgeface.core.imageio import read_image
    from edgeface.eval.datasets import first_folds, load_pairs
    from edgeface.runtime import face as face_mod
    from edgeface.runtime.face import Face, FaceRecognizer

    det = YuNetDetector(args.detector or paths.yunet_model(), threads=1)
    rec = FaceRecognizer.from_bundle(args.bundle, detector=det, threads=1, gate=False)
    thr = rec.threshold(args.far, cosine=True)
    real_turned = face_mod._turned
    face_mod._turned = lambda *a, **k: None  # "before": the orientation check off

    def located(pixels):
        (r,) = rec.analyze([pixels])
        if not isinstance(r, Face):
            return {"reason": r.reason}
        m = r.quality.measurements
        d = Detection(r.box, r.landmarks, float(r.detector_score))
        t0 = time.process_time()
        sc = orientation_scores(det, pixels, d)
        t1 = time.process_time()
        rot = np.ascontiguousarray(pixels[::-1, ::-1])
        h, w = pixels.shape[:2]
        best = 0.0
        for e in det.detect(rot):
            b = np.array([w - e.box[2], h - e.box[3], w - e.box[0], h - e.box[1]])
            ix = max(0.0, min(b[2], d.box[2]) - max(b[0], d.box[0])) * max(0.0, min(b[3], d.box[3]) - max(b[1], d.box[1]))
            iou = ix / ((b[2] - b[0]) * (b[3] - b[1]) + (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) - ix)
            if iou >= 0.3:
                best = max(best, e.score)
        t2 = time.process_time()
        pose = estimate_pose(r.landmarks)
        lm = r.landmarks
        return {
            "verify": rec.gate.assess(m, "verify").passed, "enroll": rec.gate.assess(m, "enroll").passed, "emb": r.embedding,
            "mosaic_margin": float(min(row[0] - row[1:].max() for row in sc)), "mosaic_ms": 1000 * (t1 - t0), "full180_margin": r.detector_score - best,
            "full180_ms": 1000 * (t2 - t1), "pitch": pose["pitch"], "abs_roll": abs(pose["roll"]),
            "residual": landmark_residual(lm, rec.template_points),
            "mouth_eye": float(np.linalg.norm(lm[4] - lm[3]) / max(np.linalg.norm(lm[1] - lm[0]), 1e-6)),
        }

    root = paths.lfw_dev() / "images"
    people = sorted(os.listdir(root))[: args.people]
    t_start = time.time()
    rows = {k: {} for k in range(4)}
    for i, p in enumerate(people):
        img = read_image(sorted((root / p).iterdir())[0]).pixels
        for k in range(4):
            rows[k][p] = located(np.ascontiguousarray(np.rot90(img, k)))
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(people)} people, {time.time() - t_start:.0f} s", flush=True)

    def ok(r, mode, after):
        return "emb" in r and r[mode] and (not after or r["mosaic_margin"] >= 0)

    res = {"bundle": str(args.bundle), "threshold": thr, "far": args.far, "people": len(people), "turns": {}}
    for k in range(4):
        rk = rows[k]
        found = [r for r in rk.values() if "emb" in r]
        entry = {"photos": len(rk), "face_found": len(found)}
        for after in (False, True):
            tag = "after" if after else "before"
            entry[f"pass_verify_{tag}"] = sum(ok(r, "verify", after) for r in rk.values())
            entry[f"pass_enroll_{tag}"] = sum(ok(r, "enroll", after) for r in rk.values())
            # pairs of different people: A enrolled (turned), B verified (turned); tested = both photos had a face
            names = [p for p in people if "emb" in rk[p]]
            tested = matched = 0
            for a in names:
                for b in names:
                    if a == b:
                        continue
                    tested += 1
                    if ok(rk[a], "enroll", after) and ok(rk[b], "verify", after) and float(rk[a]["emb"] @ rk[b]["emb"]) >= thr:
                        matched += 1
            entry[f"impostor_pairs_tested_{tag}"], entry[f"impostor_matches_{tag}"] = tested, matched
        entry["caught_by_mosaic"] = sum(r["mosaic_margin"] < 0 for r in found)
        entry["caught_by_full180"] = sum(r["full180_margin"] < 0 for r in found)
        res["turns"][f"{90 * k}"] = entry
        print(f"turn {90 * k:3d}: {json.dumps(entry)}", flush=True)
    # geometry rules: the best threshold per feature that keeps 99 % of upright faces
    up = [r for r in rows[0].values() if "emb" in r]
    turned = [r for k in (1, 2, 3) for r in rows[k].values() if "emb" in r]
    geo = {}
    for f in ("pitch", "residual", "mouth_eye", "abs_roll"):
        u = np.array([r[f] for r in up])
        t = np.array([r[f] for r in turned])
        lo, hi = np.percentile(u, 0.5), np.percentile(u, 99.5)
        geo[f] = {"upright_kept_range": [round(float(lo), 4), round(float(hi), 4)], "turned_caught": int(((t < lo) | (t > hi)).sum()),
                  "turned": int(len(t))}
    res["geometry_rules"] = geo
    res["cost_ms_cpu"] = {"mosaic_median": round(float(np.median([r["mosaic_ms"] for r in up + turned])), 1),
                          "full180_median": round(float(np.median([r["full180_ms"] for r in up + turned])), 1)}
    print("geometry:", json.dumps(geo), "\ncost:", res["cost_ms_cpu"], flush=True)

    # upright LFW-dev pairs: genuine accepted, impostors matched, before / after
    pairs = first_folds(load_pairs(paths.lfw_dev()), args.folds)
    if args.max_pairs:
        pairs = [p for p in pairs if p.same][: args.max_pairs // 2] + [p for p in pairs if not p.same][: args.max_pairs // 2]
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = located(read_image(path).pixels)
        return cache[path]

    g = {"genuine_pairs": 0, "impostor_pairs": 0}
    for pr in pairs:
        a, b = get(pr.a), get(pr.b)
        kind = "genuine" if pr.same else "impostor"
        g[f"{kind}_pairs"] += 1
        for after in (False, True):
            tag = "after" if after else "before"
            acc = ok(a, "enroll", after) and ok(b, "verify", after) and float(a["emb"] @ b["emb"]) >= thr
            g[f"{kind}_accepted_{tag}"] = g.get(f"{kind}_accepted_{tag}", 0) + int(acc)
    g["upright_photos"] = len(cache)
    g["upright_photos_refused_by_check"] = sum("emb" in r and r["mosaic_margin"] < 0 for r in cache.values())
    res["upright_lfw_pairs"] = g
    print("upright pairs:", json.dumps(g), flush=True)

    # CPU per verify, with and without the check (same probes, interleaved), one thread
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r2 = FaceRecognizer.from_bundle(args.bundle, gallery=Path(tmp) / "g.db", detector=det, threads=1, gate=False)  # gate measured, not enforced
        enrolled = False
        for p in people:
            f = sorted((root / p).iterdir())[0]
            if not enrolled and r2.enroll("x", [str(f)]).enrolled:
                enrolled = True
        probes = [str(sorted((root / p).iterdir())[0]) for p in people[: args.timing_probes]]
        times = {"with_check": [], "without_check": []}
        for f in probes:
            for with_check in (True, False):
                face_mod._turned = real_turned if with_check else (lambda *a, **k: None)
                t0 = time.process_time()
                r2.verify(f, "x")
                times["with_check" if with_check else "without_check"].append(1000 * (time.process_time() - t0))
        face_mod._turned = real_turned
    res["verify_cpu_ms"] = {k: {"median": round(float(np.median(v)), 1), "mean": round(float(np.mean(v)), 1), "n": len(v)} for k, v in times.items()}
    print("verify CPU ms:", res["verify_cpu_ms"], flush=True)
    res["seconds"] = round(time.time() - t_start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
