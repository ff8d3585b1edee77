"""Does the quality gate earn its place? Errors should concentrate in the faces it rejects.

1. Calibration data (CelebA-299, training data): percentiles of every quality measure, from
   which the default thresholds in edgeface/runtime/quality.py were chosen.
2. LFW-dev pairs (3,000): a pair is "accepted" when both images pass the verify gate. At the
   accuracy-optimal threshold over all pairs, compare the error rate of accepted and
   rejected pairs (and per failed check), plus FNMR at the FAR 1e-2 threshold.
3. Extended Yale B lighting: per subject, the frontal-lit image (P00A+000E+00) is the
   enrolled reference; every other lighting condition is a probe, compared with its own
   reference (genuine) and the 37 others (impostor) at the LFW threshold. Cropped Yale B
   images of one subject share one alignment, so the reference's YuNet landmarks serve all
   of that subject's images (the lighting effect is isolated from detection failures).
   Errors among probes the gate accepts vs rejects, and by lighting group.

    PYTHONPATH=. python benchmarks/runtime_quality.py
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import numpy as np

from runtime_common import bundle_quality, folder_faces, lfw_faces, measurements, onnx_reference, save_result

from edgeface.core import paths
from edgeface.core.align import align_face
from edgeface.eval.datasets import load_pairs
from edgeface.core.detect import YuNetDetector, pick_primary
from edgeface.core.imageio import read_image
from edgeface.runtime.quality import QualityGate, flip_similarity, measure


def pct(x):
    return f"{100 * x:.2f} %" if np.isfinite(x) else "n/a"


def calibration_percentiles(emb, n: int = 400) -> dict:
    from edgeface.eval.datasets import identity_folder

    items = identity_folder(paths.shared_dir() / "datasets" / "celeba-299")
    rng = np.random.default_rng(0)
    det = YuNetDetector(paths.yunet_model())
    ms, crops = [], []
    for i in rng.choice(len(items), n, replace=False):
        img = read_image(items[i][0]).pixels
        d = pick_primary(det.detect(img), img.shape)
        if d is None:
            continue
        c = align_face(img, d.landmarks, emb.card.template, emb.card.input_size)
        crops.append(c)
        ms.append(measure(c, d.landmarks, d.score, d.box))
    fs, _ = flip_similarity(emb, np.stack(crops))
    for m, f in zip(ms, fs):
        m["flip_similarity"] = float(f)
    out = {}
    for k in ["interocular", "face_size", "sharpness", "brightness", "contrast", "abs_yaw", "abs_pitch", "abs_roll", "detector_score", "flip_similarity"]:
        v = np.array([m[k] for m in ms])
        out[k] = dict(zip(["p1", "p5", "p50", "p95", "p99"], np.percentile(v, [1, 5, 50, 95, 99]).round(3).tolist()))
        print(f"  {k:16s} " + "  ".join(f"{a}={b}" for a, b in out[k].items()))
    return {"images": len(ms), "percentiles": out}


def best_threshold(scores, labels) -> float:
    """The score threshold (accept >= t) with the highest accuracy, in O(n log n): tens of
    thousands of CelebA pairs make the one-candidate-at-a-time loop too slow."""
    order = np.argsort(scores, kind="stable")
    s, lab = np.asarray(scores)[order], np.asarray(labels, bool)[order]
    cand, first = np.unique(s, return_index=True)
    genuine_at_or_above = np.concatenate([np.cumsum(lab[::-1])[::-1], [0]])
    impostor_below = np.concatenate([[0], np.cumsum(~lab)])
    correct = genuine_at_or_above[first] + impostor_below[first]
    return float(cand[int(np.argmax(correct))])


def lfw_pairs_study(emb, gate, flip: bool = True) -> tuple[dict, float]:
    data = lfw_faces(emb, flip=flip)
    index = {p: i for i, p in enumerate(data["paths"])}
    pairs = load_pairs(paths.lfw_dev())
    ia = np.array([index[str(p.a)] for p in pairs])
    ib = np.array([index[str(p.b)] for p in pairs])
    labels = np.array([p.same for p in pairs])
    return pairs_study(data, ia, ib, labels, gate, "LFW-dev")


def celeba_pairs(data: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every same-person pair of detected CelebA-299 photos, and as many random pairs of
    different people."""
    ids = np.asarray(data["ids"])
    ok = np.flatnonzero(data["detected"])
    ga, gb = [], []
    for ident in np.unique(ids[ok]):
        m = ok[ids[ok] == ident]
        a, b = np.triu_indices(len(m), 1)
        ga.append(m[a])
        gb.append(m[b])
    ga, gb = np.concatenate(ga), np.concatenate(gb)
    rng = np.random.default_rng(seed)
    ia, ib = rng.choice(ok, 3 * len(ga)), rng.choice(ok, 3 * len(ga))
    keep = np.flatnonzero(ids[ia] != ids[ib])[: len(ga)]
    ia = np.concatenate([ga, ia[keep]])
    ib = np.concatenate([gb, ib[keep]])
    labels = np.concatenate([np.ones(len(ga), bool), np.zeros(len(keep), bool)])
    return ia, ib, labels


def celeba_pairs_study(emb, gate) -> dict:
    """The same study on CelebA-299 (training/calibration data, never LFW): where the gate's
    thresholds may be tuned."""
    data = folder_faces(emb, paths.shared_dir() / "datasets" / "celeba-299")
    ia, ib, labels = celeba_pairs(data)
    res, t = pairs_study(data, ia, ib, labels, gate, "CelebA-299")
    err = (np.sum(data["emb"][ia] * data["emb"][ib], 1) >= t) != labels  # at pairs_study's best-accuracy threshold
    res["flip_percentile_gate"] = flip_percentile_study(data, ia, ib, err, data["flip"][data["detected"]], "CelebA-299")
    return res


def flip_percentile_study(data, ia, ib, err, calib_flips, name: str) -> list[dict]:
    """Reject a pair when either photo's flip similarity is below the p-th percentile of the
    calibration photos' flip similarities: how many pairs go, and how many errors go with them."""
    rows = []
    pf = np.minimum(data["flip"][ia], data["flip"][ib])
    print(f"  {name}: flip-similarity gate at percentile p of the calibration photos (share of pairs rejected; error rate accepted / rejected; share of errors rejected)")
    for p in (1, 2, 5, 10, 15, 20):
        t = float(np.percentile(calib_flips, p))
        rej = ~(pf >= t)  # NaN (no flip measured) counts as rejected
        row = {"percentile": p, "threshold": t, "rejected_pairs": float(rej.mean()), "error_rate_accepted": float(err[~rej].mean()),
               "error_rate_rejected": float(err[rej].mean()) if rej.any() else float("nan"),
               "share_of_errors_in_rejected": float(err[rej].sum() / max(1, err.sum()))}
        rows.append(row)
        print(f"    p{p:<3d} t={t:.3f}: {pct(row['rejected_pairs'])} rejected; {pct(row['error_rate_accepted'])} / {pct(row['error_rate_rejected'])}; {pct(row['share_of_errors_in_rejected'])}")
    return rows


def pairs_study(data, ia, ib, labels, gate, name: str) -> tuple[dict, float]:
    scores = np.sum(data["emb"][ia] * data["emb"][ib], 1)
    reports = {}
    for i in set(ia) | set(ib):
        reports[i] = gate.assess(measurements(data, i), "verify") if data["detected"][i] else None

    def passed(i):
        return reports[i] is not None and reports[i].passed

    acc_pair = np.array([passed(a) and passed(b) for a, b in zip(ia, ib)])
    t = best_threshold(scores, labels)
    err = (scores >= t) != labels
    imp = np.sort(scores[~labels])
    t_far = float(imp[int(np.ceil(0.99 * len(imp))) - 1])  # 1 % of impostor pairs at or above
    fnm = (scores < t_far) & labels
    why = Counter()
    why_err = Counter()
    for k in np.flatnonzero(~acc_pair):
        reasons = set()
        for i in (ia[k], ib[k]):
            r = reports[i]
            reasons |= {"no_face_detected"} if r is None else {c.name for c in r.failed}
        for r in reasons:
            why[r] += 1
            why_err[r] += int(err[k])
    res = {
        "pairs": len(ia),
        "threshold_best_accuracy": t,
        "accepted_pairs": int(acc_pair.sum()),
        "rejected_pairs": int((~acc_pair).sum()),
        "error_rate_all": float(err.mean()),
        "error_rate_accepted": float(err[acc_pair].mean()),
        "error_rate_rejected": float(err[~acc_pair].mean()) if (~acc_pair).any() else float("nan"),
        "share_of_errors_in_rejected": float(err[~acc_pair].sum() / max(1, err.sum())),
        "threshold_far_1e-2": t_far,
        "fnmr_at_far_1e-2_accepted": float(fnm[acc_pair & labels].sum() / max(1, (acc_pair & labels).sum())),
        "fnmr_at_far_1e-2_rejected": float(fnm[~acc_pair & labels].sum() / max(1, (~acc_pair & labels).sum())),
        "rejections_by_check": {k: {"pairs": why[k], "errors": why_err[k]} for k in why},
    }
    res["edc"] = error_vs_discard(data, ia, ib, err, fnm, labels)
    print(f"{name} pairs: threshold {t:.3f} (best accuracy); accepted {res['accepted_pairs']}, rejected {res['rejected_pairs']}")
    print(f"  error rate: all {pct(res['error_rate_all'])}, accepted {pct(res['error_rate_accepted'])}, rejected {pct(res['error_rate_rejected'])}; "
          f"{pct(res['share_of_errors_in_rejected'])} of errors are in the {pct(1 - acc_pair.mean())} rejected pairs")
    print(f"  FNMR at FAR 1e-2 (t={t_far:.3f}): accepted {pct(res['fnmr_at_far_1e-2_accepted'])}, rejected {pct(res['fnmr_at_far_1e-2_rejected'])}")
    for k, v in sorted(why.items(), key=lambda kv: -kv[1]):
        print(f"  rejected by {k:18s}: {v:4d} pairs, {why_err[k]} errors ({pct(why_err[k] / v)})")
    return res, t


# Each measure oriented so that higher = better quality (for the error-vs-discard curves).
GOODNESS = {
    "interocular": lambda v: v, "face_size": lambda v: v, "sharpness": lambda v: v, "contrast": lambda v: v,
    "detector_score": lambda v: v, "flip_similarity": lambda v: v, "brightness": lambda v: -abs(v - 128.0),
    "abs_yaw": lambda v: -v, "abs_pitch": lambda v: -v, "abs_roll": lambda v: -v,
}
DISCARD = (0.0, 0.02, 0.05, 0.10, 0.20)


def error_vs_discard(data, ia, ib, err, fnm, labels) -> dict:
    """Error-versus-discard characteristic (ISO/IEC 29794-1's EDC) per quality measure: rank
    pairs by the worse of their two images, discard the lowest fraction, and report the error
    rate (fixed best-accuracy threshold) and FNMR (fixed FAR 1e-2 threshold) of what is left.
    A measure that predicts errors bends the curve down faster than random discarding
    (which keeps the error rate flat)."""
    out = {}
    n = len(ia)
    rng = np.random.default_rng(0)
    per_image = [measurements(data, i) if data["detected"][i] else {} for i in range(len(data["paths"]))]
    for name, good in list(GOODNESS.items()) + [("random", None)]:
        if good is None:
            q = rng.random(n)
        else:
            vals = np.array([good(m[name]) if name in m else -np.inf for m in per_image], np.float64)
            if not np.isfinite(vals).any():
                continue
            q = np.minimum(vals[ia], vals[ib])
        order = np.argsort(q, kind="stable")  # worst first
        rows = []
        for d in DISCARD:
            keep = np.ones(n, bool)
            keep[order[: int(round(d * n))]] = False
            rows.append({"discard": d, "error_rate": float(err[keep].mean()), "fnmr_far_1e-2": float(fnm[keep & labels].sum() / max(1, (keep & labels).sum()))})
        out[name] = rows
    print("  error-vs-discard (error rate at 0 / 5 / 10 / 20 % of pairs discarded by each measure):")
    for name, rows in out.items():
        r = {x["discard"]: x["error_rate"] for x in rows}
        print(f"    {name:16s} " + " / ".join(pct(r[d]) for d in (0.0, 0.05, 0.10, 0.20)))
    return out


def plot_edc(edc: dict, path: Path, title: str = "LFW-dev") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, rows in edc.items():
        ax.plot([100 * r["discard"] for r in rows], [100 * r["error_rate"] for r in rows], marker="o", ms=3,
                ls="--" if name == "random" else "-", color="black" if name == "random" else None, label=name)
    ax.set_xlabel("pairs discarded by the measure (%)")
    ax.set_ylabel("verification error of the rest (%)")
    ax.set_title(f"{title} error vs discard per quality measure")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


LIGHT = re.compile(r"P00A([+-]\d+)E([+-]\d+)")


def light_group(az: int, el: int) -> str:
    if abs(az) <= 25 and abs(el) <= 25:
        return "near-frontal light (|az|,|el| <= 25)"
    if abs(az) >= 85 or el >= 65 or el <= -35:
        return "extreme light (|az| >= 85 or el >= 65 or el <= -35)"
    return "moderate light"


def yaleb_study(emb, gate, threshold: float | None, step: int = 1) -> dict:
    root = paths.shared_dir() / "datasets" / "yaleb-38" / "images"
    det = YuNetDetector(paths.yunet_model())
    refs, probes = {}, []
    for subj in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted(root.glob(f"{subj}/*.jpg"))
        ref = next((f for f in files if "P00A+000E+00" in f.name), None)
        if ref is None:
            continue
        img = read_image(ref).pixels
        d = pick_primary(det.detect(img), img.shape)
        if d is None:
            print(f"  {subj}: no face detected in the reference image; subject skipped")
            continue
        refs[subj] = (str(ref), d.landmarks)
        for f in files:
            m = LIGHT.search(f.name)
            if f == ref or m is None:
                continue  # the reference itself, and "Ambient" frames (no light position)
            img2 = read_image(f).pixels
            if img2.shape != img.shape:
                continue
            probes.append((str(f), subj, int(m.group(1)), int(m.group(2))))
    probes = probes[::step]
    card = emb.card
    subjects = sorted(refs)
    ref_crops = np.stack([align_face(read_image(refs[s][0]).pixels, refs[s][1], card.template, card.input_size) for s in subjects])
    ref_emb = emb.embed(ref_crops)
    crops = np.stack([align_face(read_image(p).pixels, refs[s][1], card.template, card.input_size) for p, s, _, _ in probes])
    fs_all, pe_all = [], []
    for i in range(0, len(crops), 256):
        f, e = flip_similarity(emb, crops[i : i + 256])
        fs_all.append(f)
        pe_all.append(e)
    fs, pe = np.concatenate(fs_all), np.concatenate(pe_all)
    reports = [gate.assess(measure(crops[i], refs[probes[i][1]][1], None, None, fs[i]), "verify") for i in range(len(probes))]
    accepted = np.array([r.passed for r in reports])
    sims = pe @ ref_emb.T  # (probes, subjects)
    own = np.array([subjects.index(s) for _, s, _, _ in probes])
    gen = sims[np.arange(len(probes)), own]
    imp_mask = np.ones_like(sims, bool)
    imp_mask[np.arange(len(probes)), own] = False
    threshold_source = "LFW-dev best-accuracy threshold"
    if threshold is None:
        # self-contained: the score that 0.1 % of all Yale B impostor comparisons reach
        imp = np.sort(sims[imp_mask])
        threshold = float(imp[int(np.ceil(0.999 * len(imp))) - 1])
        threshold_source = "FAR 1e-3 over all Yale B impostor comparisons"
    false_non_match = gen < threshold
    false_match = (sims >= threshold) & imp_mask  # per probe, per other subject
    fmr_probe = false_match.sum(1) / imp_mask.sum(1)
    groups = np.array([light_group(a, e) for _, _, a, e in probes])

    def summary(mask):
        if not mask.any():
            return {"probes": 0}
        return {"probes": int(mask.sum()), "fnmr": float(false_non_match[mask].mean()), "fmr": float(fmr_probe[mask].mean())}

    res = {
        "subjects": len(subjects),
        "probes": len(probes),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "probe_step": step,
        "accepted": summary(accepted),
        "rejected": summary(~accepted),
        "all": summary(np.ones(len(probes), bool)),
        "share_of_false_non_matches_in_rejected": float(false_non_match[~accepted].sum() / max(1, false_non_match.sum())),
        "by_lighting": {},
        "rejections_by_check": dict(Counter(c.name for r in reports for c in r.failed)),
    }
    print(f"Yale B: {len(subjects)} subjects, {len(probes)} probes, threshold {threshold:.3f} ({threshold_source})")
    for name in ("all", "accepted", "rejected"):
        s = res[name]
        if s["probes"]:
            print(f"  {name:9s} probes {s['probes']:5d}: FNMR {pct(s['fnmr'])}, FMR {pct(s['fmr'])}")
    print(f"  {pct(res['share_of_false_non_matches_in_rejected'])} of false non-matches are in rejected probes")
    for g in sorted(set(groups)):
        m = groups == g
        res["by_lighting"][g] = {"probes": int(m.sum()), "acceptance_rate": float(accepted[m].mean()), "all": summary(m), "accepted": summary(m & accepted), "rejected": summary(m & ~accepted)}
        a, r = res["by_lighting"][g]["accepted"], res["by_lighting"][g]["rejected"]
        print(f"  {g}: {m.sum()} probes, gate accepts {pct(accepted[m].mean())}; FNMR accepted {pct(a.get('fnmr', np.nan))} vs rejected {pct(r.get('fnmr', np.nan))}")
    print("  rejections by check: " + ", ".join(f"{k}: {v}" for k, v in sorted(res["rejections_by_check"].items(), key=lambda kv: -kv[1])))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-flip", action="store_true", help="skip mirrored-crop embeddings on LFW (half the time; the gate then has no flip-consistency check)")
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--parts", nargs="+", default=["lfw", "yaleb"], choices=["celeba", "lfw", "yaleb"])
    ap.add_argument("--yale-step", type=int, default=1, help="use every Nth Yale B probe (time)")
    ap.add_argument("--yale-threshold", choices=["lfw", "own-far"], default="lfw", help="decision threshold on Yale B: LFW's best-accuracy one, or Yale B's own FAR 1e-3")
    ap.add_argument("--gate", choices=["bundle", "defaults"], default="bundle",
                    help="thresholds: as an exported bundle carries them (flip similarity calibrated for the model), or the kit's defaults")
    args = ap.parse_args()
    # the reference MobileFaceNet exported to ONNX and run by onnxruntime: the runtime's own
    # backend, and several times faster than torch on this CPU
    emb = onnx_reference(args.threads)
    out = {"model": emb.card.name, "gate": "verify"}
    if args.gate == "bundle":
        out["quality_section"] = bundle_quality(emb)
        gate = QualityGate(out["quality_section"])
    else:
        gate = QualityGate()
    out["thresholds"] = gate.thresholds
    print(f"gate thresholds ({args.gate}): min_flip_similarity verify {gate.thresholds['verify']['min_flip_similarity']:.3f}, "
          f"enroll {gate.thresholds['enroll']['min_flip_similarity']:.3f}")
    if not args.skip_calibration:
        print("CelebA-299 calibration sample, quality measure percentiles:")
        out["calibration_celeba"] = calibration_percentiles(emb)
    t = None
    if "celeba" in args.parts:
        out["celeba_pairs"] = celeba_pairs_study(emb, gate)
        plot_edc(out["celeba_pairs"]["edc"], Path(__file__).parent / "results" / "runtime_quality_celeba_edc.png", "CelebA-299")
    if "lfw" in args.parts:
        out["lfw_pairs"], t = lfw_pairs_study(emb, gate, flip=not args.no_flip)
        out["lfw_pairs"]["flip_consistency_check"] = not args.no_flip
    if "yaleb" in args.parts:
        out["yaleb"] = yaleb_study(emb, gate, t if args.yale_threshold == "lfw" else None, args.yale_step)
    name = "runtime_quality.json" if len(args.parts) == 2 else f"runtime_quality_{'_'.join(args.parts)}.json"
    if "lfw" in args.parts and out["lfw_pairs"].get("edc"):
        plot_edc(out["lfw_pairs"]["edc"], Path(__file__).parent / "results" / "runtime_quality_lfw_edc.png")
    print(f"saved {save_result(name, out)}")


if __name__ == "__main__":
    main()
