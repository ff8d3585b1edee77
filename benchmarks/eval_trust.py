"""Evaluation beyond LFW (issue 21): each model exported to ONNX fp32 with the full verification
(LFW-dev, CFP-FF, CFP-FP through the bundle's own runtime; FAR thresholds calibrated on people
disjoint from all three), then:

* per benchmark: accuracy (k-fold), TAR at FAR 1e-3 on the benchmark's own pairs, and what the
  bundle's calibrated thresholds achieve there (FAR over all pairs of its images of different
  people, TAR over its genuine pairs);
* calibrated FAR vs achieved FAR per population, flagged beyond 2x;
* CFP: detection failures on frontal vs profile photos and what the failure rule does (accuracy
  with the fallback alignment vs excluding those pairs); the quality gate on CFP-FP (the
  bundle's verify thresholds: how many photos it rejects, error on accepted vs rejected pairs).

    nice -n 10 python benchmarks/eval_trust.py            # reference 068.ckpt and `default`
    -> benchmarks/results/eval_trust.{json,md}, eval_trust_roc_<model>.png
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

from edgeface.eval import benchmarks  # noqa: E402
from edgeface.core import paths  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BENCH = ("lfw-dev", "cfp-ff", "cfp-fp")


def export(spec: str, out: Path, threads: int) -> dict:
    from edgeface.export import ExportOptions, export_bundle, load_source
    from edgeface.runtime.bundle import read_meta

    src = load_source(spec)
    if (out / "edgeface.json").is_file():
        meta = read_meta(out)
        # reused only when made from these very weights: a retrained model keeps its name
        same_source = meta["source"].get("sha256") == src.sha256
        if same_source and "lfw_dev" in meta["parity"] and "cfp_fp" in meta["parity"] and "calibration_set" in meta["thresholds"]:
            return meta
    t = time.time()
    meta = export_bundle(spec, "onnx", "fp32", out, ExportOptions(threads=threads, show_progress=False), src=src)
    print(f"exported {spec} -> {out} in {time.time() - t:.0f} s", flush=True)
    return meta


def cfp_analysis(bundle_dir: Path) -> dict:
    """Detection failures per pose, the failure rule's effect, and the quality gate on CFP-FP."""
    from edgeface.eval.faces import aligned_crops, detect_all
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.eval.protocol import best_threshold, evaluate_scores
    from edgeface.runtime.bundle import load_bundle
    from edgeface.runtime.quality import QualityGate, flip_similarity, measure

    bundle = load_bundle(bundle_dir, threads=2)
    fp = benchmarks.get("cfp-fp").pairs()
    files = sorted({p for pr in fp for p in (pr.a, pr.b)})
    faces = detect_all(files, LandmarkStore.default(), show_progress=False)
    pose = {f: Path(f).parent.name for f in files}  # frontal / profile
    det = {}
    for kind in ("frontal", "profile"):
        fs = [f for f in files if pose[f] == kind]
        det[kind] = {"images": len(fs), "no_face": sum(faces.records[f].status == "no_face" for f in fs),
                     "other_problems": sum(faces.records[f].status not in ("ok", "no_face") for f in fs)}
    crops, ok = aligned_crops(files, faces, bundle.card, "fallback", show_progress=False)
    emb = np.zeros((len(files), bundle.card.embedding_size), np.float32)
    flips = np.full(len(files), np.nan)
    idx = np.flatnonzero(ok)
    for s in range(0, len(idx), 128):
        part = idx[s : s + 128]
        fsim, e = flip_similarity(bundle, crops[part])
        emb[part], flips[part] = e, fsim
    index = {f: i for i, f in enumerate(files)}
    ia = np.array([index[p.a] for p in fp])
    ib = np.array([index[p.b] for p in fp])
    labels = np.array([p.same for p in fp])
    folds = np.array([p.fold for p in fp])
    scores = np.sum(emb[ia] * emb[ib], axis=1)
    usable = ok[ia] & ok[ib]
    failed = np.array([faces.records[f].status == "no_face" for f in files])
    pair_failed = failed[ia] | failed[ib]
    rule = {}
    for name, mask in (("fallback (default): undetected photos aligned with the mean landmarks", usable),
                       ("exclude: pairs with an undetected photo dropped", usable & ~pair_failed)):
        rep, _ = evaluate_scores(scores[mask], labels[mask], folds[mask])
        rule[name] = {"pairs": int(mask.sum()), "accuracy": rep.accuracy_mean, "accuracy_std": rep.accuracy_std, "tar_at_far_1e-2": rep.tar_at_far.get("1e-2")}
    fb = usable & pair_failed
    thr_all = best_threshold(scores[usable], labels[usable])
    rule["pairs with a fallback-aligned photo"] = {"pairs": int(fb.sum()), "error_at_global_threshold": float(np.mean((scores[fb] >= thr_all) != labels[fb])) if fb.any() else None}
    # Quality gate: the bundle's verify thresholds on every detected photo.
    gate = QualityGate(bundle.meta.get("quality"))
    passed = np.zeros(len(files), bool)
    reasons: dict[str, int] = {}
    for i, f in enumerate(files):
        r = faces.records[f]
        if r.status != "ok":
            continue
        rep = gate.assess(measure(crops[i], r.landmarks, r.score, None, flips[i]), "verify")
        passed[i] = rep.passed
        for c in rep.failed:
            reasons[c.name] = reasons.get(c.name, 0) + 1
    pair_ok = passed[ia] & passed[ib]
    thr_1e3 = bundle.meta["thresholds"]["at_far"]["1e-3"]["threshold"]

    def errors(mask):
        if not mask.any():
            return None
        s, lab = scores[mask], labels[mask]
        return {"pairs": int(mask.sum()), "genuine": int(lab.sum()), "error_at_global_threshold": float(np.mean((s >= thr_all) != lab)),
                "frr_at_bundle_1e-3": float(np.mean(s[lab] < thr_1e3)) if lab.any() else None,
                "far_at_bundle_1e-3": float(np.mean(s[~lab] >= thr_1e3)) if (~lab).any() else None}

    gate_out = {
        "rejected_photos": {k: int(np.sum(~passed[[pose[f] == k for f in files]])) for k in ("frontal", "profile")},
        "rejection_reasons": reasons,
        "accepted_pairs": errors(usable & pair_ok),
        "rejected_pairs": errors(usable & ~pair_ok),
        "global_threshold": float(thr_all),
        "bundle_threshold_1e-3": thr_1e3,
    }
    return {"detection": det, "failure_rule": rule, "quality_gate": gate_out}


def rows_for(model: str, meta: dict) -> list[dict]:
    rows = []
    at = meta["thresholds"]["at_far"]
    for name in BENCH:
        rec = meta["parity"][name.replace("-", "_")]
        row = {"model": model, "benchmark": benchmarks.get(name).title, "accuracy": rec["accuracy_mean"], "accuracy_std": rec["accuracy_std"],
               "auc": rec["auc"], "tar_at_far_1e-3": rec["tar_at_far"].get("1e-3"), "num_failed": rec["num_failed"], "num_pairs": rec["num_pairs"]}
        for far in ("1e-3", "1e-4"):
            a = at[far]["achieved"][name.replace("-", "_")]
            row[f"bundle_{far}_threshold"] = at[far]["threshold"]
            row[f"bundle_{far}_far"] = a["far"]
            row[f"bundle_{far}_tar"] = a["tar"]
            row[f"bundle_{far}_impostors"] = a["num_impostor"]
        rows.append(row)
    return rows


def md(results: dict) -> str:
    out = ["| model | set | accuracy | TAR @ FAR 1e-3 (own pairs) | undetected pairs | bundle threshold (FAR 1e-3): achieved FAR / TAR | (FAR 1e-4): achieved FAR / TAR |",
           "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        out.append(f"| {r['model']} | {r['benchmark']} | {100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} % | {100 * r['tar_at_far_1e-3']:.2f} % | "
                   f"{r['num_failed']} / {r['num_pairs']} | {r['bundle_1e-3_far']:.2e} / {100 * r['bundle_1e-3_tar']:.2f} % | "
                   f"{r['bundle_1e-4_far']:.2e} / {100 * r['bundle_1e-4_tar']:.2f} % |")
    out += ["", "| model | calibrated FAR | threshold | FAR on calibration set | LFW-dev | CFP-FF | CFP-FP | flagged (> 2x) |", "|---|---|---|---|---|---|---|---|"]
    for m, c in results["calibration"].items():
        for far, e in c["at_far"].items():
            ach = e["achieved"]
            flags = [k for k, v in ach.items() if v["far_over_target"] is not None and (v["far_over_target"] > 2 or v["far_over_target"] < 0.5)]
            out.append(f"| {m} | {far} | {e['threshold']:.4f} | {e['far_measured']:.2e} | " + " | ".join(
                f"{ach[k]['far']:.2e} ({ach[k]['far_over_target']:.2f}x)" for k in ("lfw_dev", "cfp_ff", "cfp_fp")) + f" | {', '.join(flags) or '—'} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=f"{paths.reference_mobilefacenet()},default")
    ap.add_argument("--bundles", default=str(ROOT / "out" / "trust"), help="where the fp32 bundles are exported (reused if complete)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", action="store_true", help="keep the other models already in benchmarks/results/eval_trust.json")
    args = ap.parse_args()
    results = {"rows": [], "calibration": {}, "cfp": {}, "command": "nice -n 10 python benchmarks/eval_trust.py", "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.merge and (RESULTS / "eval_trust.json").is_file():  # add to the models measured before
        results = json.loads((RESULTS / "eval_trust.json").read_text())
    for spec in args.models.split(","):
        name = Path(spec).stem if Path(spec).suffix else spec
        bdir = Path(args.bundles) / name / "onnx-fp32"
        meta = export(spec, bdir, args.threads)
        results["rows"] = [r for r in results["rows"] if r["model"] != meta["card"]["name"]] + rows_for(meta["card"]["name"], meta)
        results["calibration"][meta["card"]["name"]] = {"set": meta["thresholds"]["calibration_set"], "at_far": meta["thresholds"]["at_far"],
                                                       "notes": meta["thresholds"]["notes"], "far_curve": meta["thresholds"].get("far_curve")}
        t = time.time()
        results["cfp"][meta["card"]["name"]] = cfp_analysis(bdir)
        print(f"{name}: CFP analysis {time.time() - t:.0f} s", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "eval_trust.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
        (RESULTS / "eval_trust.md").write_text(md(results))
    print(md(results))
    print(json.dumps(results["cfp"], indent=1, default=float))


if __name__ == "__main__":
    main()
