"""The fairness report of several models on the same faces (docs/results/fairness.md).

    python benchmarks/fairness_report.py --utkface DIR --aaf ../shared/datasets/aaf-8k \
        --model default=BUNDLE_OR_NAME --model dlib_resnet=... --model mobilefacenet=... --out docs/results

Per population, every model embeds the same images (eval.fairness: YuNet + alignment as
`edgeface eval`), each finds its near-duplicate pairs (eval.fairness.find_duplicates) and the pairs all models agree
on are dropped for every model, so that each model is measured on exactly the same impostor
pairs. Embeddings are cached under --cache (outside the repository) so a re-run only reports.
Writes fairness-<population>-<model>.json, fairness-<population>.png (pooled thresholds) and
fairness-<population>-bundle.png (bundle thresholds) and prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgeface.commands.eval import open_model
from edgeface.core.landmarks import LandmarkStore
from edgeface.eval import fairness as F
from edgeface.runtime.bundle import read_meta


def embedded(name: str, embedder, pop: F.Population, cache: Path, store) -> tuple[F.Embedded, float]:
    """Embeddings of `pop` through `embedder`, from the cache when this model and population were embedded before."""
    f = cache / f"{name}-{pop.name}-n{len(pop.files)}.npz"  # the cap changes the population
    if f.is_file():
        z = np.load(f, allow_pickle=False)
        files = [str(x) for x in z["files"]]
        idx = {p: i for i, p in enumerate(pop.files)}
        keep = np.zeros(len(pop.files), bool)
        keep[[idx[p] for p in files]] = True
        return F.Embedded(z["emb"], pop.take(keep), json.loads(str(z["no_face"])), z["flip"]), float(z["seconds"])
    t = time.time()
    e = F.embed_population(embedder, pop, store, show_progress=False)
    sec = time.time() - t
    np.savez(f, emb=e.emb, files=np.array(e.population.files), no_face=json.dumps(e.no_face), flip=e.flip_similarity, seconds=sec)
    return e, sec


def table(reports: dict[str, dict], which: str) -> str:
    """Markdown: one row per model, FMR per group at threshold `which`, the ratio."""
    first = next(iter(reports.values()))
    groups = first["groups"]
    head = "| model | threshold | " + " | ".join(groups) + " | max/min (" + ", ".join(first["headline_groups"]) + ") | max/min all |"
    lines = [head, "|" + "---|" * (len(groups) + 4)]
    for m, r in reports.items():
        if which not in r["at_threshold"]:
            continue
        a = r["at_threshold"][which]
        cells = []
        for g in groups:
            x = a["groups"][g]
            cells.append(f"{x['fmr']:.1e}" + ("" if x["resolved"] else "*"))
        rat = lambda q: "n/a" if q["ratio"] is None else f"{q['ratio']:.0f}x ({q['max_group']} / {q['min_group']})"  # noqa: E731
        lines.append(f"| {m} | {which} = {a['threshold']:.4f} | " + " | ".join(cells) + f" | {rat(a['ratio'])} | {rat(a['ratio_all_groups'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utkface", help="UTKFace folder (only the sha256 0-7 half is read)")
    ap.add_argument("--aaf", help="AAF-8k folder")
    ap.add_argument("--model", action="append", required=True, help="NAME=SPEC (registry name, checkpoint or bundle directory)")
    ap.add_argument("--thresholds", action="append", default=[], help="NAME=BUNDLE: measure model NAME at this bundle's thresholds")
    ap.add_argument("--max-per-group", type=int, default=500)
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--cache", default="out/fairness-cache")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    out, cache = Path(args.out), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    pops = []
    if args.utkface:
        pops.append(F.utkface(args.utkface).sample(args.max_per_group))
    if args.aaf:
        pops.append(F.aaf_ages(args.aaf).sample(args.max_per_group))
    store = LandmarkStore.default()
    models = dict(m.split("=", 1) for m in args.model)
    borrowed = dict(t.split("=", 1) for t in args.thresholds)
    embedders = {n: open_model(SimpleNamespace(model=s, threads=args.threads, card=None, device="cpu", arch=None, input_size=None, template=None,
                                               embedding_size=128)) for n, s in models.items()}
    for pop in pops:
        runs, dups, secs = {}, {}, {}
        for n, emb in embedders.items():
            runs[n], secs[n] = embedded(n, emb, pop, cache, store)
            dups[n] = F.find_duplicates(runs[n])
            print(f"{pop.name} {n}: {len(runs[n].population.files)} faces in {secs[n]:.0f} s, {dups[n]['pairs']} near-duplicate pairs "
                  f"(t={dups[n]['threshold']:.4f}), {dups[n]['images_dropped']} images", flush=True)
        # A pair is taken as one person only when every model scores it at least as alike as a face and
        # its mirror image (the intersection): one biased model alone would take the look-alike impostors
        # of the group it confuses for duplicates and hide exactly the differential measured here.
        names = None
        for n, e in runs.items():
            p = {tuple(sorted((e.population.files[i], e.population.files[j])))
                 for i, j in F.duplicate_pairs(e.emb, dups[n]["threshold"], e.population.identities)}
            names = p if names is None else names & p
        ref = next(iter(runs.values())).population.files
        index = {f: i for i, f in enumerate(ref)}
        both = {(index[a], index[b]) for a, b in names if a in index and b in index}
        drop = F.drop_clusters(len(ref), both)
        union = sorted(os.path.basename(f) for f, d in zip(ref, drop) if d)
        per_model = {n: {k: v for k, v in d.items() if k != "dropped"} for n, d in dups.items()}
        by_group: dict[str, int] = {}
        for g, d in zip(next(iter(runs.values())).population.groups, drop):
            if d:
                by_group[g] = by_group.get(g, 0) + 1
        dup = {"rule": f"pairs that every model ({', '.join(dups)}) scores at or above its own median flip similarity (a face and its "
                       "mirror image) are one person; all but one image of each such cluster dropped",
               "pairs": len(both), "images_dropped": len(union), "dropped_by_group": by_group, "per_model_alone": per_model, "dropped": union}
        reports = {}
        for n, emb in embedders.items():
            r = F.report_for(emb, runs[n], pop, dup, thresholds=F.bundle_meta_thresholds(read_meta(borrowed[n])) if n in borrowed else None)
            if n in borrowed:
                r["thresholds_from"] = borrowed[n]
            r.update(model_name=n, model_spec=models[n], embed_seconds=round(secs[n], 1))
            reports[n] = r
            (out / f"fairness-{pop.name}-{n}.json").write_text(json.dumps(r, indent=1))
        F.plot_fairness(reports, out / f"fairness-{pop.name}.png", ["pooled 1e-3"],
                        title=f"{pop.name}: FMR per group at one threshold set on the pooled groups at FAR 1e-3")
        if any("bundle 1e-3" in r["at_threshold"] for r in reports.values()):
            F.plot_fairness({n: r for n, r in reports.items() if "bundle 1e-3" in r["at_threshold"]}, out / f"fairness-{pop.name}-bundle.png",
                            ["bundle 1e-3"], title=f"{pop.name}: FMR per group at each bundle's own FAR-1e-3 threshold")
        print(f"\n### {pop.name}: {pop.description}\n")
        print(f"near-duplicates dropped: {len(union)} images from {len(both)} pairs all models agree on, by group {by_group} (each model alone: "
              + ", ".join(f"{n} {d['images_dropped']}" for n, d in dups.items()) + ")\n")
        for which in ("bundle 1e-3", "pooled 1e-3", "bundle 1e-4", "pooled 1e-4"):
            if any(which in r["at_threshold"] for r in reports.values()):
                print(table(reports, which) + "\n")
        first = next(iter(reports.values()))
        print("| model | " + " | ".join(first["groups"]) + " |  (threshold giving FAR 1e-3 on the group alone)")
        print("|" + "---|" * (len(first["groups"]) + 1))
        for n, r in reports.items():
            print(f"| {n} | " + " | ".join(f"{(r['threshold_per_group'][g].get('1e-3') or {}).get('threshold', float('nan')):.4f}" for g in r["groups"]) + " |")
        print("\ncounts: " + json.dumps(first["counts"]) + "\nno face: " + json.dumps({n: r["no_face"] for n, r in reports.items()}), flush=True)


if __name__ == "__main__":
    main()
