"""Issue 20, finding 2: does the non-face check stop noise / blank / texture crops given with
the app's own landmarks, and what does it cost real faces?

Exports the reference MobileFaceNet to an ONNX fp32 bundle (the export calibrates the
quality.nonface prototypes on CelebA/AAF calibration faces, never LFW), then
  1. the attack: enrol random noise with a real face's landmarks, verify other noise;
  2. held-out synthetic non-faces (another seed) and each family's catch rate;
  3. LFW-dev pair images through the runtime (YuNet -> align -> gate, verify mode): the
     rejection rate with the non-face check and without it (the same run, the check's own
     failures counted apart).

    PYTHONPATH=. python benchmarks/runtime_nonface.py --folds 5 --out benchmarks/results/runtime_nonface.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeface.core import paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5, help="LFW-dev folds whose pair images are measured (default all 5)")
    ap.add_argument("--bundle", help="use this bundle instead of exporting one")
    ap.add_argument("--work", default="out/nonface", help="where the exported bundle goes")
    ap.add_argument("--out", default="benchmarks/results/runtime_nonface.json")
    args = ap.parse_args(argv)
    from edgeface.export import ExportOptions, export_bundle
    from edgeface.eval.datasets import first_folds, load_pairs
    from edgeface.runtime import FaceRecognizer
    from edgeface.runtime.quality import nonface_crops, nonface_margins

    bundle = Path(args.bundle) if args.bundle else Path(args.work) / "reference-onnx-fp32"
    if not args.bundle:
        t0 = time.time()
        export_bundle(str(paths.reference_mobilefacenet()), "onnx", "fp32", bundle,
                      ExportOptions(n_verify=40, n_impostor=0, lfw_folds=0, show_progress=False))
        print(f"exported {bundle} in {time.time() - t0:.0f} s", file=sys.stderr)
    rec = FaceRecognizer.from_bundle(bundle, detector=str(paths.yunet_model()))
    section = rec.nonface
    report = {"bundle": str(bundle), "nonface": {k: v for k, v in section.items() if k != "prototypes"}}

    # 1. the attack from the issue, with the landmarks YuNet finds on a real LFW photo
    lfw = paths.lfw_dev() / "images"
    photo = sorted((lfw / "Hugo_Chavez").glob("*.jpg"))[0]
    lm = rec.locate(str(photo))[1]
    rng = np.random.default_rng(20)
    noise = [rng.integers(0, 256, (250, 250, 3), dtype=np.uint8) for _ in range(20)]
    nf = rec.analyze(noise, landmarks=[lm] * len(noise), mode="enroll")
    report["attack_noise_with_landmarks"] = {"images": len(noise), "accepted": int(sum(r.ok for r in nf)),
                                             "reasons": sorted({c.name for r in nf if not r.ok and r.quality for c in r.quality.failed})}

    # 2. held-out synthetic non-faces
    h, w = rec.card.input_size
    crops, fams = nonface_crops((h, w), seed=123)
    m = nonface_margins(rec.embedder.embed(crops), section)
    report["held_out_seed123_caught"] = {f: round(float(np.mean([m[i] > 0 for i, g in enumerate(fams) if g == f])), 4) for f in sorted(set(fams))}

    # 3. LFW-dev through the runtime
    pairs = first_folds(load_pairs(paths.lfw_dev()), args.folds)
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    t0 = time.time()
    n_rej = n_nonface_only = n_nonface_any = 0
    margins = []
    for k in range(0, len(images), 32):
        for r in rec.analyze(images[k : k + 32], mode="verify"):
            q = r.quality
            if q is not None and "nonface_margin" in q.measurements:
                margins.append(q.measurements["nonface_margin"])
            if r.ok:
                continue
            n_rej += 1
            failed = {c.name for c in q.failed} if q is not None else set()
            n_nonface_any += "nonface_margin" in failed
            n_nonface_only += failed == {"nonface_margin"}
        print(f"{min(k + 32, len(images))}/{len(images)} images, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    n = len(images)
    report["lfw_dev"] = {
        "folds": args.folds, "images": n,
        "rejected_with_check": n_rej, "rejected_without_check": n_rej - n_nonface_only,
        "rejection_rate_with_check_pct": round(100 * n_rej / n, 3), "rejection_rate_without_check_pct": round(100 * (n_rej - n_nonface_only) / n, 3),
        "rise_pt": round(100 * n_nonface_only / n, 3), "nonface_check_failed_any": n_nonface_any,
        "margin_max": round(float(np.max(margins)), 4) if margins else None, "margin_p99": round(float(np.percentile(margins, 99)), 4) if margins else None,
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
