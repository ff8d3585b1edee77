"""Open-set identification error vs gallery size (issue 21): the one-to-one FAR of a threshold is
not the rate at which a stranger is identified as somebody (FPIR). Galleries of 10, 100, 1,000 and
10,000 enrolled people (one photo each, drawn at random from LFW-dev's identities, AAF-8k and
CelebA-299), searched by photos of people enrolled in none of them (held-out LFW-dev and
CelebA-299 people); FPIR = the share of those searches whose best score reaches the threshold.
Thresholds: the bundle's FAR 1e-3 and 1e-4 (calibrated on other people), and the one
`identify --fpir 0.01` chooses at each size (runtime.openset on the bundle's FAR curve).
Prediction drawn beside: FPIR = 1 - (1 - FAR)^N with the threshold's FAR on the calibration set.

    nice -n 10 python benchmarks/fpir_gallery.py   # after benchmarks/eval_trust.py exported the bundles
    -> benchmarks/results/fpir_gallery.{json,md,png}
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

from edgeface.core import paths  # noqa: E402
from edgeface.eval.datasets import IMAGE_SUFFIXES, identity_folder  # noqa: E402
from edgeface.runtime.openset import fpir_for_far, threshold_for_fpir  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SIZES = (10, 100, 1000, 10000)
REPEATS = {10: 200, 100: 50, 1000: 10, 10000: 3}
TARGET_FPIR = 0.01


def populations(seed: int = 0, probe_lfw: int = 400, probe_celeba: int = 100, per_probe: int = 3, max_pool: int | None = None):
    """(pool of (file, identity) to enrol, one photo each; probe (file, identity) of people in no gallery)."""
    ds = paths.shared_dir() / "datasets"
    rng = np.random.default_rng(seed)
    lfw: dict[str, list[str]] = {}
    for f, i in identity_folder(ds / "lfw-dev"):
        lfw.setdefault(i, []).append(f)
    cel: dict[str, list[str]] = {}
    for f, i in identity_folder(ds / "celeba-299"):
        cel.setdefault(i, []).append(f)
    lfw_ids, cel_ids = sorted(lfw), sorted(cel)
    lfw_multi = [i for i in lfw_ids if len(lfw[i]) >= 2]
    held_lfw = set(np.array(lfw_multi)[rng.permutation(len(lfw_multi))[:probe_lfw]])
    held_cel = set(np.array(cel_ids)[rng.permutation(len(cel_ids))[:probe_celeba]])
    probes = [(f, f"lfw:{i}") for i in sorted(held_lfw) for f in lfw[i][:per_probe]] + [(f, f"celeba:{i}") for i in sorted(held_cel) for f in cel[i][:per_probe]]
    pool = [(lfw[i][0], f"lfw:{i}") for i in lfw_ids if i not in held_lfw] + [(cel[i][0], f"celeba:{i}") for i in cel_ids if i not in held_cel]
    pool += [(str(p), f"aaf:{p.name}") for p in sorted((ds / "aaf-8k" / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if max_pool and max_pool < len(pool):  # a random subset keeping the sources' proportions
        pool = [pool[i] for i in sorted(rng.permutation(len(pool))[:max_pool])]
    return pool, probes


def embed_files(bundle, items, store):
    from edgeface.eval.faces import align_files

    fs = align_files([f for f, _ in items], bundle.card, [i for _, i in items], store=store, show_progress=False)
    embs = np.concatenate([bundle.embed(fs.crops[s : s + 256]) for s in range(0, len(fs), 256)])
    return embs, fs.identities


def embeddings(bundle_dir: Path, embedder: str | None, seed: int, cache: Path | None, max_pool: int | None = None, per_probe: int = 3):
    """(gallery pool embeddings, identities, probe embeddings, identities), through the bundle, or
    through `embedder` (its torch source: cosine parity to an fp32 bundle is 1.00000, so the
    scores are the bundle's to 1e-5) when given; kept in `cache` (.npz) between runs."""
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.runtime.bundle import load_bundle

    if cache and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return z["g"], list(z["gi"]), z["p"], list(z["pi"])
    if embedder:
        from edgeface.zoo import load_embedder

        model = load_embedder(embedder, device="cpu")
    else:
        model = load_bundle(bundle_dir, threads=2)
    store = LandmarkStore.default()
    pool, probes = populations(seed, per_probe=per_probe, max_pool=max_pool)
    t = time.time()
    g_emb, g_ids = embed_files(model, pool, store)
    p_emb, p_ids = embed_files(model, probes, store)
    print(f"{model.card.name}: {len(g_ids)} enrollable, {len(p_ids)} stranger probes, embedded in {time.time() - t:.0f} s", flush=True)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, g=g_emb, gi=np.array(g_ids), p=p_emb, pi=np.array(p_ids))
    return g_emb, g_ids, p_emb, p_ids


def measure(bundle_dir: Path, seed: int = 0, embedder: str | None = None, cache: Path | None = None, max_pool: int | None = None, per_probe: int = 3) -> dict:
    from edgeface.runtime.bundle import read_meta

    meta = read_meta(bundle_dir)
    th = meta["thresholds"]
    g_emb, g_ids, p_emb, p_ids = embeddings(bundle_dir, embedder, seed, cache, max_pool, per_probe)
    assert not set(g_ids) & set(p_ids)  # strangers: in no gallery
    scores = p_emb @ g_emb.T  # (probes, pool)
    rng = np.random.default_rng(seed)
    fixed = {f"FAR {k}": v["threshold"] for k, v in th["at_far"].items()}
    cal_far = {f"FAR {k}": v["far_measured"] for k, v in th["at_far"].items()}
    rows = []
    for n in SIZES:
        if n > len(g_ids):
            continue
        best = np.concatenate([scores[:, rng.choice(len(g_ids), n, replace=False)].max(axis=1) for _ in range(REPEATS[n])])
        row = {"gallery_size": n, "searches": int(best.size), "repeats": REPEATS[n]}
        for name, thr in fixed.items():
            row[name] = {"threshold": thr, "fpir": float(np.mean(best >= thr)), "predicted": fpir_for_far(cal_far[name], n)}
        key = f"identify --fpir {TARGET_FPIR:g}"
        try:
            t_fpir, far_needed = threshold_for_fpir(th["far_curve"], TARGET_FPIR, n)
            row[key] = {"threshold": t_fpir, "far_per_comparison": far_needed, "fpir": float(np.mean(best >= t_fpir)), "predicted": TARGET_FPIR}
        except ValueError as exc:  # the FAR this size needs is beyond the calibrated curve: identify refuses, and so do we
            row[key] = {"threshold": None, "fpir": None, "predicted": TARGET_FPIR, "refused": str(exc)}
        rows.append(row)
        print(f"  N={n:>6}: " + "  ".join(f"{k}: " + (f"FPIR {v['fpir']:.4f} (pred {v['predicted']:.4f}, t={v['threshold']:.3f})" if v["fpir"] is not None else "refused (FAR beyond the calibrated curve)")
                                          for k, v in row.items() if isinstance(v, dict)), flush=True)
    return {"model": meta["card"]["name"], "bundle": str(bundle_dir), "embedded_by": embedder or "the bundle", "pool": len(g_ids), "probes": len(p_ids), "probe_people": len(set(p_ids)), "rows": rows}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.4), dpi=120, squeeze=False, sharey=True)
    for ax, res in zip(axes[0], results):
        ns = [r["gallery_size"] for r in res["rows"]]
        keys = [k for k in res["rows"][0] if isinstance(res["rows"][0][k], dict)]
        for k, colour in zip(keys, ("C0", "C1", "C2", "C3")):
            done = [r for r in res["rows"] if r[k]["fpir"] is not None]  # identify --fpir refuses sizes beyond its calibrated FAR range
            ax.plot([r["gallery_size"] for r in done], [max(r[k]["fpir"], 1e-4) for r in done], "o-", color=colour, label=f"{k}: measured")
            ax.plot(ns, [max(r[k]["predicted"], 1e-4) for r in res["rows"]], "--", color=colour, alpha=0.6, label=f"{k}: 1-(1-FAR)^N")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 1.5)
        ax.set_xlabel("people enrolled (gallery size N)")
        ax.set_title(f"{res['model']} ({res['probes']} stranger searches per gallery)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("FPIR: strangers identified as someone")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("False positive identification rate vs gallery size\n(values below 1e-4 drawn at 1e-4)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def md(results: list[dict]) -> str:
    out = []
    for res in results:
        keys = [k for k in res["rows"][0] if isinstance(res["rows"][0][k], dict)]
        out.append(f"{res['model']}: {res['probes']} searches by {res['probe_people']} people enrolled nowhere; FPIR measured (predicted 1-(1-FAR)^N)\n")
        out.append("| N enrolled | " + " | ".join(keys) + " |")
        out.append("|---|" + "---|" * len(keys))
        for r in res["rows"]:
            out.append(f"| {r['gallery_size']:,} | " + " | ".join(f"{100 * r[k]['fpir']:.2f} % ({100 * r[k]['predicted']:.2f} %), t={r[k]['threshold']:.3f}" if r[k]["fpir"] is not None
                                                              else "refused: needs a FAR below the calibrated curve" for k in keys) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", default=",".join(str(ROOT / "out" / "trust" / m / "onnx-fp32") for m in ("068", "default")),
                    help="bundles whose thresholds are measured (comma-separated)")
    ap.add_argument("--embedders", help="comma-separated, one per bundle: embed with this model instead of the bundle (its torch source)")
    ap.add_argument("--embeddings-only", action="store_true", help="only compute and cache the embeddings (no bundle needed yet)")
    ap.add_argument("--max-pool", type=int, help="enrol from a random subset of this many people (default all ~11,000: needed for N = 10,000)")
    ap.add_argument("--per-probe", type=int, default=3, help="photos searched per stranger (default 3)")
    args = ap.parse_args()
    bundles = args.bundles.split(",")
    embedders = args.embedders.split(",") if args.embedders else [None] * len(bundles)
    caches = [ROOT / "out" / "fpir" / f"{Path(e or b).stem if Path(e or b).suffix else Path(e or b).parent.name}.npz" for b, e in zip(bundles, embedders)]
    if args.embeddings_only:
        for b, e, c in zip(bundles, embedders, caches):
            embeddings(Path(b), e, 0, c, args.max_pool, args.per_probe)
        return
    if args.max_pool:
        caches = [c.with_name(f"{c.stem}-pool{args.max_pool}-p{args.per_probe}.npz") for c in caches]
    results = [measure(Path(b), 0, e, c, args.max_pool, args.per_probe) for b, e, c in zip(bundles, embedders, caches)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fpir_gallery.json").write_text(json.dumps({"command": "nice -n 10 python benchmarks/fpir_gallery.py " + " ".join(sys.argv[1:]), "results": results}, indent=2))
    (RESULTS / "fpir_gallery.md").write_text(md(results))
    plot(results, RESULTS / "fpir_gallery.png")
    print(md(results))


if __name__ == "__main__":
    main()
