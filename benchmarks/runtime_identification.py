"""Open-set identification on LFW-dev with the runtime gallery.

Protocol (the standard open-set one, e.g. NIST FRVT 1:N / IJB-C style): every identity
with >= 2 images has its first image (sorted by file name) enrolled; its other images are
mated probes. Identities with one image are never enrolled: their images are non-mated
probes. Reported:
- rank-1: fraction of mated probes whose best gallery match is the right identity (closed set);
- DIR at FAR 1e-2: the threshold t is set so that 1 % of non-mated probes have a best score
  >= t (false alarms); DIR = fraction of mated probes that are rank-1 correct AND score >= t.
Search runs through edgeface.runtime.gallery.Gallery for each codec (float32, fp16, int8,
binary, binary256, binary512), so the numbers are the runtime's. Without the quality gate (all probes) and with
it (probes the verify gate rejects are removed; enrolment images are always kept so every
identity stays enrolled — the counts say how many probes were refused).

    PYTHONPATH=. python benchmarks/runtime_identification.py
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from runtime_common import bundle_quality, lfw_faces, measurements, onnx_reference, save_result

from edgeface.runtime.gallery import Gallery
from edgeface.runtime.quality import QualityGate


def dir_at_far(top_names, top_scores, truth, nonmated_scores, far):
    t = float(np.quantile(nonmated_scores, 1 - far, method="higher")) if len(nonmated_scores) else float("inf")
    correct = top_names == truth
    return float(np.mean(correct & (top_scores >= t))), t


def run_protocol(data, card, codec: str, probe_mask: np.ndarray, far: float = 1e-2) -> dict:
    ids, emb, usable = data["ids"], data["emb"], data["usable"]
    order = np.argsort(data["paths"])
    first = {}
    for i in order:
        if usable[i] and ids[i] not in first:
            first[ids[i]] = i
    counts = {k: int(v) for k, v in zip(*np.unique(ids[usable], return_counts=True))}
    enrolled = {k: i for k, i in first.items() if counts[k] >= 2}
    enrolled_rows = set(enrolled.values())
    mated = np.array([i for i in range(len(ids)) if usable[i] and probe_mask[i] and ids[i] in enrolled and i not in enrolled_rows])
    nonmated = np.array([i for i in range(len(ids)) if usable[i] and probe_mask[i] and ids[i] not in enrolled])
    with tempfile.TemporaryDirectory() as d:
        g = Gallery(f"{d}/g.db", card=card, codec=codec)
        g.add_many([(k, emb[i], 1, 1.0) for k, i in enrolled.items()])
        t0 = time.perf_counter()
        res_m = g.search(emb[mated], top_k=1, use_index=False)
        res_n = g.search(emb[nonmated], top_k=1, use_index=False)
        dt = time.perf_counter() - t0
        g.close()
    top_names = np.array([r[0].name for r in res_m])
    top_scores = np.array([r[0].score for r in res_m])
    non_scores = np.array([r[0].score for r in res_n])
    dir1, t = dir_at_far(top_names, top_scores, ids[mated], non_scores, far)
    dir3, t3 = dir_at_far(top_names, top_scores, ids[mated], non_scores, 1e-1)
    return {
        "codec": codec,
        "gallery_size": len(enrolled),
        "mated_probes": int(len(mated)),
        "nonmated_probes": int(len(nonmated)),
        "rank1": float(np.mean(top_names == ids[mated])),
        "dir_at_far_1e-2": dir1,
        "threshold_at_far_1e-2": t,
        "dir_at_far_1e-1": dir3,
        "search_ms_per_probe": 1000 * dt / max(1, len(mated) + len(nonmated)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-flip", action="store_true", help="skip mirrored-crop embeddings on LFW (half the time; the gate then has no flip-consistency check)")
    args = ap.parse_args()
    # the reference MobileFaceNet exported to ONNX and run by onnxruntime: the runtime's own
    # backend, and several times faster than torch on this CPU
    emb = onnx_reference(args.threads)
    data = lfw_faces(emb, flip=not args.no_flip)
    gate = QualityGate(bundle_quality(emb))  # as the model's exported bundle carries it
    passed = np.array([data["usable"][i] and gate.assess(measurements(data, i), "verify").passed for i in range(len(data["ids"]))])
    rows = []
    for gated in (False, True):
        mask = passed if gated else np.ones(len(passed), bool)
        for codec in ("float32", "fp16", "int8", "binary", "binary256", "binary512"):
            r = run_protocol(data, emb.card, codec, mask)
            r["quality_gate"] = "verify" if gated else "off"
            rows.append(r)
            print(f"gate={r['quality_gate']:6s} codec={codec:7s} gallery={r['gallery_size']} mated={r['mated_probes']} non-mated={r['nonmated_probes']}  "
                  f"rank-1={100 * r['rank1']:.2f} %  DIR@FAR=1e-2={100 * r['dir_at_far_1e-2']:.2f} % (t={r['threshold_at_far_1e-2']:.3f})  "
                  f"DIR@FAR=1e-1={100 * r['dir_at_far_1e-1']:.2f} %  search {r['search_ms_per_probe']:.3f} ms/probe", flush=True)
    out = {
        "model": emb.card.name,
        "dataset": "LFW-dev (folds 1-5 images, all identities)",
        "images": int(len(data["ids"])),
        "images_without_detection": int((~data["detected"]).sum()),
        "probes_refused_by_verify_gate": int((~passed).sum()),
        "rows": rows,
    }
    print(f"saved {save_result('runtime_identification.json', out)}")


if __name__ == "__main__":
    main()
