"""Identify latency vs gallery size (1k … 1M synthetic templates), exact and usearch-indexed,
with recall@1 of the index against exact search. Everything goes through
edgeface.runtime.gallery.Gallery (SQLite file, float32 codec), as an app would use it.

Synthetic templates: random unit vectors in the model's embedding size (128). That is a hard
case for a graph index (no cluster structure, high intrinsic dimension), so recall on real
embeddings is at least this good. Mated queries are a gallery template plus noise (cosine
~0.7 to it, like a genuine probe); non-mated queries are fresh random vectors. The index is
built once, saved beside the gallery, and index_load_s is what a second process pays to load it.

    PYTHONPATH=. python benchmarks/runtime_gallery_scale.py --sizes 1000 10000 100000 1000000
"""
from __future__ import annotations

import os

# One BLAS thread: a single-query search is a matrix-vector product, where a second thread
# only adds synchronisation (10x slower on a loaded 2-core machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import resource
import tempfile
import time

import numpy as np

from runtime_common import save_result

from edgeface.core.card import ModelCard
from edgeface.runtime.gallery import Gallery


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--expansion-search", type=int, nargs="+",
                    help="usearch search breadths (ef) to measure on the same built index (default: the gallery's own setting)")
    ap.add_argument("--index-max", type=int, default=10**9, help="skip the index for larger galleries (build time on a slow machine)")
    ap.add_argument("--out", default="runtime_gallery_scale.json", help="result file name under benchmarks/results")
    ap.add_argument("--dir", default=None, help="where to put the gallery files (default: a temp dir)")
    args = ap.parse_args()
    card = ModelCard(name="synthetic", arch="none", input_size=(112, 96), embedding_size=args.dim, template="sphereface_112x96")
    rng = np.random.default_rng(0)
    rows = []
    print("wall-clock (and CPU) times; this machine is shared, see load_average in the JSON")
    print(f"{'size':>8} {'insert s':>9} {'load s':>7} {'exact ms (cpu)':>15} {'build s (cpu)':>15} {'index ms (cpu)':>15} {'recall@1 mated':>14} {'recall@1 non-mated':>18} {'file MB':>8}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            path = os.path.join(d, "g.db")
            g = Gallery(path, card=card, codec="float32", index_threshold=10**12)
            t0 = time.perf_counter()
            chunk = 100_000
            for s in range(0, n, chunk):
                x = unit(rng.normal(size=(min(chunk, n - s), args.dim)))
                g.add_many(((f"id{s + i:07d}", x[i], 1, 1.0) for i in range(len(x))))
            insert_s = time.perf_counter() - t0
            g.close()
            g = Gallery(path, card=card, readonly=True, index_threshold=10**12)
            t0 = time.perf_counter()
            g._refresh()  # first search loads and decodes every template
            load_s = time.perf_counter() - t0
            base = g._matrix
            pick = rng.choice(n, args.queries, replace=n < args.queries)
            mated = unit(base[pick] + 1.0 / np.sqrt(args.dim) * rng.normal(size=(args.queries, args.dim)).astype(np.float32))
            nonmated = unit(rng.normal(size=(args.queries, args.dim)))
            # exact, one query at a time (the app's identify call)
            t0, c0 = time.perf_counter(), time.process_time()
            exact_m = [g.search(q, top_k=1, use_index=False)[0][0].name for q in mated]
            exact_ms = 1000 * (time.perf_counter() - t0) / args.queries
            exact_cpu_ms = 1000 * (time.process_time() - c0) / args.queries
            exact_n = [r[0].name for r in g.search(nonmated, top_k=1, use_index=False)]
            row = {"size": n, "dim": args.dim, "insert_s": insert_s, "load_s": load_s, "exact_ms_per_query": exact_ms, "exact_cpu_ms_per_query": exact_cpu_ms,
                   "exact_top1_is_source_template": float(np.mean([a == f"id{p:07d}" for a, p in zip(exact_m, pick)])),
                   "file_mb": os.path.getsize(path) / 2**20}
            if g.index_available() and n <= args.index_max:
                t0, c0 = time.perf_counter(), time.process_time()
                g.search(mated[0], top_k=1, use_index=True)  # builds the index
                row["index_build_s"] = time.perf_counter() - t0
                row["index_build_cpu_s"] = time.process_time() - c0
                assert g.index_source == "built"
                # What the next process pays instead: load the saved index (and the templates).
                row["index_file_mb"] = os.path.getsize(g.index_file()) / 2**20
                with Gallery(path, readonly=True, index_threshold=10**12) as again:
                    again._refresh()
                    t0 = time.perf_counter()
                    again.search(mated[0], top_k=1, use_index=True)
                    row["index_load_s"] = time.perf_counter() - t0
                    assert again.index_source == "loaded"
                breadths = args.expansion_search or [g._index.expansion_search]
                for ef in breadths:
                    g._index.expansion_search = ef
                    t0, c0 = time.perf_counter(), time.process_time()
                    idx_m = [g.search(q, top_k=1, use_index=True)[0][0].name for q in mated]
                    ms, cpu_ms = 1000 * (time.perf_counter() - t0) / args.queries, 1000 * (time.process_time() - c0) / args.queries
                    idx_n = [r[0].name for r in g.search(nonmated, top_k=1, use_index=True)]
                    rec_m = float(np.mean([a == b for a, b in zip(idx_m, exact_m)]))
                    rec_n = float(np.mean([a == b for a, b in zip(idx_n, exact_n)]))
                    row.setdefault("index_by_expansion_search", {})[ef] = {"ms_per_query": ms, "cpu_ms_per_query": cpu_ms,
                                                                                  "recall_at_1_mated": rec_m, "recall_at_1_nonmated": rec_n}
                    if ef == breadths[0]:  # the headline columns: the first breadth asked for
                        row.update(index_ms_per_query=ms, index_cpu_ms_per_query=cpu_ms, index_recall_at_1_mated=rec_m, index_recall_at_1_nonmated=rec_n,
                                   index_expansion_search=ef)
                    if len(breadths) > 1:
                        print(f"{n:>8} ef={ef:<5} {ms:7.2f} ms/query  recall@1 mated {rec_m:.3f}  non-mated {rec_n:.3f}", flush=True)
            row["load_average_1min"] = os.getloadavg()[0]
            row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            g.close()
        rows.append(row)
        nan = float("nan")
        print(f"{n:>8} {row['insert_s']:>9.2f} {row['load_s']:>7.2f} {row['exact_ms_per_query']:>7.2f} ({row['exact_cpu_ms_per_query']:>5.2f}) "
              f"{row.get('index_build_s', nan):>7.1f} ({row.get('index_build_cpu_s', nan):>5.1f}) "
              f"{row.get('index_ms_per_query', nan):>7.2f} ({row.get('index_cpu_ms_per_query', nan):>5.2f}) {row.get('index_recall_at_1_mated', float('nan')):>14.3f} "
              f"{row.get('index_recall_at_1_nonmated', float('nan')):>18.3f} {row['file_mb']:>8.1f}", flush=True)
    print(f"saved {save_result(args.out, {'rows': rows, 'note': 'float32 codec, exact = numpy matmul over decoded templates, index = usearch HNSW (cos, f32, default connectivity/expansion_add; expansion_search as listed), candidates re-scored exactly'})}")


if __name__ == "__main__":
    main()
